"""Two-compartment uptake, 2CUM (the 2CXM with ve → ∞; Sourbron & Buckley, PMB 2011;56:R1)::

    C(t) = f · Cp ⊛ [(1 - E) exp(-k t) + E](τ),   k = (f + PS)/vp,   E = PS/(f + PS),   f = Fp/100

Linear form (Flouri et al., MRM 2016;76:998): ``C = -k ∫C + f ∫Cp + f PS/vp ∫∫Cp``.
"""

from __future__ import annotations


from qmri.jit import njit
from qmri.models.dce.convolution import expconv, expconv_torch
from qmri.models.dce.kernels import zero, zero2
from qmri.models.dce.pk import LinearForm, PKModel, tissue_prior
from qmri.models.dce.twins import delay_min, parts


@njit(cache=True)
def _cum_signal(Fp, PS, vp, d, acq, out):
    f = Fp / 100.0
    u = f + PS
    zero(out)
    dm = d / 60.0
    expconv(acq[2], acq[1], acq[3], acq[4], u / vp, dm, f * f / u, out, 0.0, out, 0.0, out, 0.0, out)
    expconv(acq[2], acq[1], acq[3], acq[4], 0.0, dm, f * PS / u, out, 0.0, out, 0.0, out, 0.0, out)


@njit(cache=True)
def _cum_jacobian(Fp, PS, vp, d, acq, J, has_delay, out, want_out):
    """Columns: Fp, PS, vp, [delay]; with ``want_out`` also the signal into ``out``."""
    f = Fp / 100.0
    u = f + PS
    k = u / vp
    dm = d / 60.0
    zero2(J)
    expconv(acq[2], acq[1], acq[3], acq[4], k, dm, 1.0, J[:, 0], 1.0, J[:, 1], 0.0, J[:, 0], 0.0, J[:, 0])
    expconv(acq[2], acq[1], acq[3], acq[4], 0.0, dm, 1.0, J[:, 2], 0.0, J[:, 0], 1.0 if has_delay else 0.0,
            J[:, 3 if has_delay else 0], 0.0, J[:, 0])
    w1 = f * f / u
    w0 = f * PS / u
    for i in range(J.shape[0]):
        F = J[i, 0]
        G = J[i, 1]
        F0 = J[i, 2]
        if want_out:
            out[i] = w1 * F + w0 * F0
        dF = (2.0 * f / u - f * f / (u * u)) * F + w1 * G / vp + (PS / u - f * PS / (u * u)) * F0
        dPS = -f * f / (u * u) * F + w1 * G / vp + (f / u - f * PS / (u * u)) * F0
        J[i, 0] = dF / 100.0
        J[i, 1] = dPS
        J[i, 2] = -w1 * G * u / (vp * vp)
        if has_delay:
            cp = J[i, 3]
            J[i, 3] = -(w1 * (cp - k * F) + w0 * cp) / 60.0


@njit(cache=True)
def twocum_signal(p, acq, cov, out):
    """2CUM; p = (Fp mL/min/100mL, PS 1/min, vp)."""
    _cum_signal(p[0], p[1], p[2], 0.0, acq, out)


@njit(cache=True)
def twocum_jacobian(p, acq, cov, J):
    _cum_jacobian(p[0], p[1], p[2], 0.0, acq, J, False, J[:, 0], False)


@njit(cache=True)
def twocum_signal_jacobian(p, acq, cov, out, J):
    _cum_jacobian(p[0], p[1], p[2], 0.0, acq, J, False, out, True)


@njit(cache=True)
def twocum_delay_signal(p, acq, cov, out):
    """2CUM with delay; p = (Fp, PS, vp, delay s)."""
    _cum_signal(p[0], p[1], p[2], p[3], acq, out)


@njit(cache=True)
def twocum_delay_jacobian(p, acq, cov, J):
    _cum_jacobian(p[0], p[1], p[2], p[3], acq, J, True, J[:, 0], False)


@njit(cache=True)
def twocum_delay_signal_jacobian(p, acq, cov, out, J):
    _cum_jacobian(p[0], p[1], p[2], p[3], acq, J, True, out, True)


def twocum_twin(params, acq, delay_idx):
    """2CUM in torch; params (N, 3 [+ delay])."""
    import torch

    t, c, fr = parts(acq)
    f, PS, vp = params[:, 0] / 100.0, params[:, 1], params[:, 2]
    u = f + PS
    dm = delay_min(params, delay_idx)
    F, _ = expconv_torch(t, c, fr, u / vp, dm)
    F0, _ = expconv_torch(t, c, fr, torch.zeros_like(f), dm)
    return (f * f / u)[:, None] * F + (f * PS / u)[:, None] * F0


def _from_linear(beta):
    k, f, g = beta[:, 0], beta[:, 1], beta[:, 2]
    vp = f / (k - g / f)
    return [100.0 * f, vp * g / f, vp]


MODEL = PKModel(
    name="2cum",
    label="2CUM",
    parameters=("Fp", "PS", "vp+"),
    kernels=(twocum_signal, twocum_jacobian, twocum_signal_jacobian),
    delay_kernels=(twocum_delay_signal, twocum_delay_jacobian, twocum_delay_signal_jacobian),
    torch_signal=twocum_twin,
    reference="Sourbron & Buckley, PMB 2011;56:R1 (two-compartment uptake)",
    linear=LinearForm(1, (1, 2), _from_linear, "Flouri et al., MRM 2016;76:998"),
    prior=tissue_prior("Fp", "PS", "vp"),
)
