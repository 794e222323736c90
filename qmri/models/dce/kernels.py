"""What the Numba kernels of the DCE models share (the kernels: one module per model in
:mod:`qmri.models.dce.pk`).

Kernel conventions: ``acq`` rows (see :func:`qmri.models.dce.convolution.acquisition`): time (s),
Cp (mM), time (min), slope of Cp per segment (mM/min), frame mark, one column per time point of
the AIF's grid and the frames (each row contiguous: the recursion reads them in order); ``out`` and
``J`` have one row per frame. The delay parameter is in s (converted to min in the kernels).
Public kernels follow the declaration conventions of :mod:`qmri.models.base` (``cov`` unused).
"""

from __future__ import annotations

from qmri.jit import njit


@njit(cache=True)
def zero(a):
    """Set a 1-D array to 0."""
    for i in range(a.shape[0]):
        a[i] = 0.0


@njit(cache=True)
def zero2(J):
    """Set a 2-D array to 0."""
    for i in range(J.shape[0]):
        for q in range(J.shape[1]):
            J[i, q] = 0.0
