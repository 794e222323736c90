"""Tofts (Tofts & Kermode, MRM 1991;17:357; Tofts et al., JMRI 1999;10:223)::

    C(t) = Ktrans · Cp ⊛ exp(-kep t)(τ),   kep = Ktrans / ve,   τ = t - delay

Linear form (Murase, MRM 2004;51:858): ``C = -kep ∫C + Ktrans ∫Cp``. Derived output ``kep`` (1/min).
The kernels serve extended Tofts too (:mod:`qmri.models.dce.pk.etm`), with ``vp``.
"""

from __future__ import annotations


from qmri.jit import njit
from qmri.models.dce.convolution import expconv, expconv_torch
from qmri.models.dce.kernels import zero, zero2
from qmri.models.dce.pk import LinearForm, PKModel, tissue_prior
from qmri.models.dce.twins import delay_min, parts


@njit(cache=True)
def tofts_family_signal(Kt, ve, vp, d, acq, out):
    zero(out)
    expconv(acq[2], acq[1], acq[3], acq[4], Kt / ve, d / 60.0, Kt, out, 0.0, out, vp, out, 0.0, out)


@njit(cache=True)
def tofts_family_jacobian(Kt, ve, vp, d, acq, J, has_vp, has_delay, out, want_out):
    """Columns: Ktrans, ve, [vp], [delay]; with ``want_out`` also the signal into ``out``."""
    zero2(J)
    k = Kt / ve
    both = has_vp and has_delay
    wC = 1.0 if (has_vp or has_delay) else 0.0
    expconv(acq[2], acq[1], acq[3], acq[4], k, d / 60.0, 1.0, J[:, 0], 1.0, J[:, 1], wC, J[:, 2 if wC else 0],
            1.0 if both else 0.0, J[:, 3 if both else 0])
    for i in range(J.shape[0]):
        F = J[i, 0]
        G = J[i, 1]
        if want_out:
            out[i] = Kt * F + (vp * J[i, 2] if has_vp else 0.0)
        J[i, 0] = F + k * G
        J[i, 1] = -k * k * G
        if has_delay:
            dtau = Kt * (J[i, 2] - k * F)
            if has_vp:
                J[i, 3] = -(dtau + vp * J[i, 3]) / 60.0
            else:
                J[i, 2] = -dtau / 60.0


@njit(cache=True)
def tofts_signal(p, acq, cov, out):
    """Tofts; p = (Ktrans 1/min, ve)."""
    tofts_family_signal(p[0], p[1], 0.0, 0.0, acq, out)


@njit(cache=True)
def tofts_jacobian(p, acq, cov, J):
    tofts_family_jacobian(p[0], p[1], 0.0, 0.0, acq, J, False, False, J[:, 0], False)


@njit(cache=True)
def tofts_signal_jacobian(p, acq, cov, out, J):
    tofts_family_jacobian(p[0], p[1], 0.0, 0.0, acq, J, False, False, out, True)


@njit(cache=True)
def tofts_delay_signal(p, acq, cov, out):
    """Tofts with delay; p = (Ktrans 1/min, ve, delay s)."""
    tofts_family_signal(p[0], p[1], 0.0, p[2], acq, out)


@njit(cache=True)
def tofts_delay_jacobian(p, acq, cov, J):
    tofts_family_jacobian(p[0], p[1], 0.0, p[2], acq, J, False, True, J[:, 0], False)


@njit(cache=True)
def tofts_delay_signal_jacobian(p, acq, cov, out, J):
    tofts_family_jacobian(p[0], p[1], 0.0, p[2], acq, J, False, True, out, True)


def tofts_twin(params, acq, has_vp, delay_idx):
    """Tofts (``has_vp`` False) or extended Tofts in torch; params (N, 2 or 3 [+ delay])."""
    t, c, fr = parts(acq)
    Kt, ve = params[:, 0], params[:, 1]
    F, cp = expconv_torch(t, c, fr, Kt / ve, delay_min(params, delay_idx))
    out = Kt[:, None] * F
    if has_vp:
        out = out + params[:, 2:3] * cp
    return out


def _from_linear(beta):
    kep, Kt = beta[:, 0], beta[:, 1]
    return [Kt, Kt / kep]


def kep(p):
    """kep = Ktrans / ve (1/min)."""
    return p["Ktrans"] / p["ve"]


MODEL = PKModel(
    name="tofts",
    label="Tofts",
    parameters=("Ktrans", "ve"),
    kernels=(tofts_signal, tofts_jacobian, tofts_signal_jacobian),
    delay_kernels=(tofts_delay_signal, tofts_delay_jacobian, tofts_delay_signal_jacobian),
    torch_signal=lambda P, a, d: tofts_twin(P, a, False, d),
    reference="Tofts & Kermode, MRM 1991;17:357; Tofts et al., JMRI 1999;10:223",
    linear=LinearForm(1, (1,), _from_linear, "Murase, MRM 2004;51:858"),
    derived={"kep": ("1/min", kep)},
    prior=tissue_prior("Ktrans", "ve"),
    ve_requires_ktrans=True,
    pretrained=dict(n=100_000, snr="5:100", ensemble=1),
)
