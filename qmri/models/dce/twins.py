"""What the torch twins of the DCE models share (the twins: one module per model in
:mod:`qmri.models.dce.pk`): the same equations as the Numba kernels, differentiable and batched
over voxels."""

from __future__ import annotations


def parts(acq):
    """Time (s), Cp (mM) and the frame mark of a torch acquisition array."""
    return acq[0], acq[1], acq[4]


def delay_min(params, idx):
    """The delay (min) from column ``idx`` (s) of ``params``; zeros when ``idx`` is None."""
    import torch

    return params[:, idx] / 60.0 if idx is not None else torch.zeros_like(params[:, 0])
