"""Two-compartment exchange, 2CXM (Sourbron & Buckley, PMB 2011;56:R1 / MRM 2011;66:735)::

    C(t) = f · Cp ⊛ [A exp(-k₊ t) + (1 - A) exp(-k₋ t)](τ),   f = Fp/100,   τ = t - delay

with k± the eigenvalues of the exchange system, ``k₊ + k₋ = (f + PS)/vp + PS/ve``,
``k₊ k₋ = f PS / (vp ve)`` and ``A = (k₊ - PS/ve - PS/vp) / (k₊ - k₋)``. Linear form (twice
integrated; Flouri et al., MRM 2016;76:998): ``C = -S ∫C - P ∫∫C + f ∫Cp + f Q ∫∫Cp`` with
``S = k₊ + k₋``, ``P = k₊ k₋``, ``Q = PS/ve + PS/vp``.
"""

from __future__ import annotations

import numpy as np

from qmri.jit import njit
from qmri.models.dce.convolution import expconv, expconv_torch
from qmri.models.dce.kernels import zero, zero2
from qmri.models.dce.pk import LinearForm, PKModel, tissue_prior
from qmri.models.dce.twins import delay_min, parts


@njit(cache=True)
def _cxm_rates(f, PS, ve, vp):
    S = (f + PS) / vp + PS / ve
    P = f * PS / (vp * ve)
    Q = PS / ve + PS / vp
    D = np.sqrt(max(S * S - 4.0 * P, 0.0))
    kp = 0.5 * (S + D)
    km = 0.5 * (S - D)
    A = (kp - Q) / D
    return S, P, Q, D, kp, km, A


@njit(cache=True)
def _cxm_partial(S, D, A, dS, dP, dQ):
    """Derivatives of k+, k- and A from those of S = k+ + k-, P = k+ k- and Q."""
    dD = (S * dS - 2.0 * dP) / D
    dkp = 0.5 * (dS + dD)
    dkm = 0.5 * (dS - dD)
    return dkp, dkm, (dkp - dQ) / D - A * dD / D


@njit(cache=True)
def _cxm_signal(Fp, PS, ve, vp, d, acq, out):
    f = Fp / 100.0
    S, P, Q, D, kp, km, A = _cxm_rates(f, PS, ve, vp)
    zero(out)
    dm = d / 60.0
    expconv(acq[2], acq[1], acq[3], acq[4], kp, dm, f * A, out, 0.0, out, 0.0, out, 0.0, out)
    expconv(acq[2], acq[1], acq[3], acq[4], km, dm, f * (1.0 - A), out, 0.0, out, 0.0, out, 0.0, out)


@njit(cache=True)
def _cxm_jacobian(Fp, PS, ve, vp, d, acq, J, has_delay, out, want_out):
    """Columns: Fp, PS, ve, vp, [delay]; with ``want_out`` also the signal into ``out``."""
    f = Fp / 100.0
    S, P, Q, D, kp, km, A = _cxm_rates(f, PS, ve, vp)
    dm = d / 60.0
    zero2(J)
    expconv(acq[2], acq[1], acq[3], acq[4], kp, dm, 1.0, J[:, 0], 1.0, J[:, 1], 1.0 if has_delay else 0.0,
            J[:, 4 if has_delay else 0], 0.0, J[:, 0])
    expconv(acq[2], acq[1], acq[3], acq[4], km, dm, 1.0, J[:, 2], 1.0, J[:, 3], 0.0, J[:, 0], 0.0, J[:, 0])
    # partial derivatives of S, P, Q with respect to (f, PS, ve, vp)
    dS = (1.0 / vp, 1.0 / vp + 1.0 / ve, -PS / (ve * ve), -(f + PS) / (vp * vp))
    dP = (PS / (vp * ve), f / (vp * ve), -P / ve, -P / vp)
    dQ = (0.0, 1.0 / ve + 1.0 / vp, -PS / (ve * ve), -PS / (vp * vp))
    dkp0, dkm0, dA0 = _cxm_partial(S, D, A, dS[0], dP[0], dQ[0])
    dkp1, dkm1, dA1 = _cxm_partial(S, D, A, dS[1], dP[1], dQ[1])
    dkp2, dkm2, dA2 = _cxm_partial(S, D, A, dS[2], dP[2], dQ[2])
    dkp3, dkm3, dA3 = _cxm_partial(S, D, A, dS[3], dP[3], dQ[3])
    for i in range(J.shape[0]):
        Fpl = J[i, 0]
        Gpl = J[i, 1]
        Fmi = J[i, 2]
        Gmi = J[i, 3]
        base = A * Fpl + (1.0 - A) * Fmi
        if want_out:
            out[i] = f * base
        dF = Fpl - Fmi
        Ap = A * Gpl
        Am = (1.0 - A) * Gmi
        J[i, 0] = (base + f * (dA0 * dF + Ap * dkp0 + Am * dkm0)) / 100.0
        J[i, 1] = f * (dA1 * dF + Ap * dkp1 + Am * dkm1)
        J[i, 2] = f * (dA2 * dF + Ap * dkp2 + Am * dkm2)
        J[i, 3] = f * (dA3 * dF + Ap * dkp3 + Am * dkm3)
        if has_delay:
            cp = J[i, 4]
            J[i, 4] = -f * (cp - A * kp * Fpl - (1.0 - A) * km * Fmi) / 60.0


@njit(cache=True)
def twocxm_signal(p, acq, cov, out):
    """2CXM; p = (Fp mL/min/100mL, PS 1/min, ve, vp)."""
    _cxm_signal(p[0], p[1], p[2], p[3], 0.0, acq, out)


@njit(cache=True)
def twocxm_jacobian(p, acq, cov, J):
    _cxm_jacobian(p[0], p[1], p[2], p[3], 0.0, acq, J, False, J[:, 0], False)


@njit(cache=True)
def twocxm_signal_jacobian(p, acq, cov, out, J):
    _cxm_jacobian(p[0], p[1], p[2], p[3], 0.0, acq, J, False, out, True)


@njit(cache=True)
def twocxm_delay_signal(p, acq, cov, out):
    """2CXM with delay; p = (Fp, PS, ve, vp, delay s)."""
    _cxm_signal(p[0], p[1], p[2], p[3], p[4], acq, out)


@njit(cache=True)
def twocxm_delay_jacobian(p, acq, cov, J):
    _cxm_jacobian(p[0], p[1], p[2], p[3], p[4], acq, J, True, J[:, 0], False)


@njit(cache=True)
def twocxm_delay_signal_jacobian(p, acq, cov, out, J):
    _cxm_jacobian(p[0], p[1], p[2], p[3], p[4], acq, J, True, out, True)


def twocxm_twin(params, acq, delay_idx):
    """2CXM in torch; params (N, 4 [+ delay])."""
    import torch

    t, c, fr = parts(acq)
    f, PS, ve, vp = params[:, 0] / 100.0, params[:, 1], params[:, 2], params[:, 3]
    S = (f + PS) / vp + PS / ve
    P = f * PS / (vp * ve)
    Q = PS / ve + PS / vp
    D = torch.sqrt(torch.clamp(S * S - 4.0 * P, min=0.0))
    kp, km = 0.5 * (S + D), 0.5 * (S - D)
    A = (kp - Q) / D
    dm = delay_min(params, delay_idx)
    Fp_, _ = expconv_torch(t, c, fr, kp, dm)
    Fm_, _ = expconv_torch(t, c, fr, km, dm)
    return f[:, None] * (A[:, None] * Fp_ + (1.0 - A)[:, None] * Fm_)


def _from_linear(beta):
    S, P, f, fQ = beta[:, 0], beta[:, 1], beta[:, 2], beta[:, 3]
    Q = fQ / f
    vp = f / (S - Q)
    kb = P / (S - Q)                        # PS / ve
    PS = vp * (Q - kb)
    return [100.0 * f, PS, PS / kb, vp]


MODEL = PKModel(
    name="2cxm",
    label="2CXM",
    parameters=("Fp", "PS", "ve", "vp+"),
    kernels=(twocxm_signal, twocxm_jacobian, twocxm_signal_jacobian),
    delay_kernels=(twocxm_delay_signal, twocxm_delay_jacobian, twocxm_delay_signal_jacobian),
    torch_signal=twocxm_twin,
    reference="Sourbron & Buckley, PMB 2011;56:R1 and MRM 2011;66:735 (two-compartment exchange)",
    linear=LinearForm(2, (1, 2), _from_linear, "Flouri et al., MRM 2016;76:998"),
    prior=tissue_prior("Fp", "PS", "ve", "vp"),
)
