"""Patlak (Patlak, Blasberg & Fenstermacher, JCBFM 1983;3:1)::

    C(t) = vp · Cp(τ) + Ktrans · ∫₀^τ Cp,   τ = t - delay

Linear in its parameters: ``C = vp Cp + Ktrans ∫Cp``.
"""

from __future__ import annotations


from qmri.jit import njit
from qmri.models.dce.convolution import expconv, expconv_torch
from qmri.models.dce.kernels import zero, zero2
from qmri.models.dce.pk import LinearForm, PKModel, tissue_prior
from qmri.models.dce.twins import delay_min, parts


@njit(cache=True)
def _patlak_signal(Kt, vp, d, acq, out):
    zero(out)
    expconv(acq[2], acq[1], acq[3], acq[4], 0.0, d / 60.0, Kt, out, 0.0, out, vp, out, 0.0, out)


@njit(cache=True)
def _patlak_jacobian(Kt, vp, d, acq, J, has_delay, out, want_out):
    """Columns: Ktrans, vp, [delay]; with ``want_out`` also the signal into ``out``."""
    zero2(J)
    expconv(acq[2], acq[1], acq[3], acq[4], 0.0, d / 60.0, 1.0, J[:, 0], 0.0, J[:, 0], 1.0, J[:, 1],
            1.0 if has_delay else 0.0, J[:, 2 if has_delay else 0])
    for i in range(J.shape[0]):
        if want_out:
            out[i] = Kt * J[i, 0] + vp * J[i, 1]
        if has_delay:
            J[i, 2] = -(Kt * J[i, 1] + vp * J[i, 2]) / 60.0


@njit(cache=True)
def patlak_signal(p, acq, cov, out):
    """Patlak; p = (Ktrans 1/min, vp)."""
    _patlak_signal(p[0], p[1], 0.0, acq, out)


@njit(cache=True)
def patlak_jacobian(p, acq, cov, J):
    _patlak_jacobian(p[0], p[1], 0.0, acq, J, False, J[:, 0], False)


@njit(cache=True)
def patlak_signal_jacobian(p, acq, cov, out, J):
    _patlak_jacobian(p[0], p[1], 0.0, acq, J, False, out, True)


@njit(cache=True)
def patlak_delay_signal(p, acq, cov, out):
    """Patlak with delay; p = (Ktrans 1/min, vp, delay s)."""
    _patlak_signal(p[0], p[1], p[2], acq, out)


@njit(cache=True)
def patlak_delay_jacobian(p, acq, cov, J):
    _patlak_jacobian(p[0], p[1], p[2], acq, J, True, J[:, 0], False)


@njit(cache=True)
def patlak_delay_signal_jacobian(p, acq, cov, out, J):
    _patlak_jacobian(p[0], p[1], p[2], acq, J, True, out, True)


def patlak_twin(params, acq, delay_idx):
    """Patlak in torch; params (N, 2 [+ delay])."""
    import torch

    t, c, fr = parts(acq)
    F, cp = expconv_torch(t, c, fr, torch.zeros_like(params[:, 0]), delay_min(params, delay_idx))
    return params[:, 0:1] * F + params[:, 1:2] * cp


def _from_linear(beta):
    return [beta[:, 1], beta[:, 0]]


MODEL = PKModel(
    name="patlak",
    label="Patlak",
    parameters=("Ktrans", "vp"),
    kernels=(patlak_signal, patlak_jacobian, patlak_signal_jacobian),
    delay_kernels=(patlak_delay_signal, patlak_delay_jacobian, patlak_delay_signal_jacobian),
    torch_signal=patlak_twin,
    reference="Patlak, Blasberg & Fenstermacher, JCBFM 1983;3:1",
    linear=LinearForm(0, (0, 1), _from_linear, "Patlak, Blasberg & Fenstermacher, JCBFM 1983;3:1"),
    prior=tissue_prior("Ktrans", "vp"),
)
