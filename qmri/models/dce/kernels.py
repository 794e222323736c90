"""Numba signal and Jacobian kernels of the DCE models (equations in :mod:`qmri.models.dce.models`).

``acq`` rows (see :func:`qmri.models.dce.convolution.acquisition`): time (s), Cp (mM), time (min),
slope of Cp per segment (mM/min), frame mark, one column per time point of the AIF's grid and the
frames (each row contiguous: the recursion reads them in order); ``out`` and ``J`` have one row
per frame. The delay parameter is in s (converted to min
here). Public kernels follow the declaration conventions of :mod:`qmri.models.base` (``cov`` unused).
"""

from __future__ import annotations

import numpy as np

from qmri.jit import njit
from qmri.models.dce.convolution import expconv


@njit(cache=True)
def _zero(a):
    for i in range(a.shape[0]):
        a[i] = 0.0


@njit(cache=True)
def _zero2(J):
    for i in range(J.shape[0]):
        for q in range(J.shape[1]):
            J[i, q] = 0.0


@njit(cache=True)
def _tofts_signal(Kt, ve, vp, d, acq, out):
    _zero(out)
    expconv(acq[2], acq[1], acq[3], acq[4], Kt / ve, d / 60.0, Kt, out, 0.0, out, vp, out, 0.0, out)


@njit(cache=True)
def _tofts_jacobian(Kt, ve, vp, d, acq, J, has_vp, has_delay, out, want_out):
    """Columns: Ktrans, ve, [vp], [delay]; with ``want_out`` also the signal into ``out``."""
    _zero2(J)
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
    _tofts_signal(p[0], p[1], 0.0, 0.0, acq, out)


@njit(cache=True)
def tofts_jacobian(p, acq, cov, J):
    _tofts_jacobian(p[0], p[1], 0.0, 0.0, acq, J, False, False, J[:, 0], False)


@njit(cache=True)
def tofts_signal_jacobian(p, acq, cov, out, J):
    _tofts_jacobian(p[0], p[1], 0.0, 0.0, acq, J, False, False, out, True)


@njit(cache=True)
def tofts_delay_signal(p, acq, cov, out):
    """Tofts with delay; p = (Ktrans 1/min, ve, delay s)."""
    _tofts_signal(p[0], p[1], 0.0, p[2], acq, out)


@njit(cache=True)
def tofts_delay_jacobian(p, acq, cov, J):
    _tofts_jacobian(p[0], p[1], 0.0, p[2], acq, J, False, True, J[:, 0], False)


@njit(cache=True)
def tofts_delay_signal_jacobian(p, acq, cov, out, J):
    _tofts_jacobian(p[0], p[1], 0.0, p[2], acq, J, False, True, out, True)


@njit(cache=True)
def etm_signal(p, acq, cov, out):
    """Extended Tofts; p = (Ktrans 1/min, ve, vp)."""
    _tofts_signal(p[0], p[1], p[2], 0.0, acq, out)


@njit(cache=True)
def etm_jacobian(p, acq, cov, J):
    _tofts_jacobian(p[0], p[1], p[2], 0.0, acq, J, True, False, J[:, 0], False)


@njit(cache=True)
def etm_signal_jacobian(p, acq, cov, out, J):
    _tofts_jacobian(p[0], p[1], p[2], 0.0, acq, J, True, False, out, True)


@njit(cache=True)
def etm_delay_signal(p, acq, cov, out):
    """Extended Tofts with delay; p = (Ktrans 1/min, ve, vp, delay s)."""
    _tofts_signal(p[0], p[1], p[2], p[3], acq, out)


@njit(cache=True)
def etm_delay_jacobian(p, acq, cov, J):
    _tofts_jacobian(p[0], p[1], p[2], p[3], acq, J, True, True, J[:, 0], False)


@njit(cache=True)
def etm_delay_signal_jacobian(p, acq, cov, out, J):
    _tofts_jacobian(p[0], p[1], p[2], p[3], acq, J, True, True, out, True)


@njit(cache=True)
def _patlak_signal(Kt, vp, d, acq, out):
    _zero(out)
    expconv(acq[2], acq[1], acq[3], acq[4], 0.0, d / 60.0, Kt, out, 0.0, out, vp, out, 0.0, out)


@njit(cache=True)
def _patlak_jacobian(Kt, vp, d, acq, J, has_delay, out, want_out):
    """Columns: Ktrans, vp, [delay]; with ``want_out`` also the signal into ``out``."""
    _zero2(J)
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


@njit(cache=True)
def _cum_signal(Fp, PS, vp, d, acq, out):
    f = Fp / 100.0
    u = f + PS
    _zero(out)
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
    _zero2(J)
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
    _zero(out)
    dm = d / 60.0
    expconv(acq[2], acq[1], acq[3], acq[4], kp, dm, f * A, out, 0.0, out, 0.0, out, 0.0, out)
    expconv(acq[2], acq[1], acq[3], acq[4], km, dm, f * (1.0 - A), out, 0.0, out, 0.0, out, 0.0, out)


@njit(cache=True)
def _cxm_jacobian(Fp, PS, ve, vp, d, acq, J, has_delay, out, want_out):
    """Columns: Fp, PS, ve, vp, [delay]; with ``want_out`` also the signal into ``out``."""
    f = Fp / 100.0
    S, P, Q, D, kp, km, A = _cxm_rates(f, PS, ve, vp)
    dm = d / 60.0
    _zero2(J)
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


@njit(cache=True)
def _aath_rates(Fp, PS, ve, vp):
    """f (1/min), the extraction fraction E = 1 - exp(-PS/f), its complement exp(-PS/f), k = E f / ve
    (1/min) and the capillary transit time Tc = vp / f (min)."""
    f = Fp / 100.0
    e = np.exp(-PS / f)
    E = -np.expm1(-PS / f)
    return f, E, e, E * f / ve, vp / f


@njit(cache=True)
def _aath_signal(Fp, PS, ve, vp, d, acq, out):
    f, E, e, k, Tc = _aath_rates(Fp, PS, ve, vp)
    _zero(out)
    dm = d / 60.0
    # f ∫_{τ-Tc}^{τ} Cp  +  E f ∫ Cp(u) exp(-k (τ - Tc - u)) du: each an exact piecewise-linear integral
    expconv(acq[2], acq[1], acq[3], acq[4], 0.0, dm, f, out, 0.0, out, 0.0, out, 0.0, out)
    expconv(acq[2], acq[1], acq[3], acq[4], 0.0, dm + Tc, -f, out, 0.0, out, 0.0, out, 0.0, out)
    expconv(acq[2], acq[1], acq[3], acq[4], k, dm + Tc, E * f, out, 0.0, out, 0.0, out, 0.0, out)


@njit(cache=True)
def _aath_jacobian(Fp, PS, ve, vp, d, acq, J, has_delay, out, want_out):
    """Columns: Fp, PS, ve, vp, [delay]; with ``want_out`` also the signal into ``out``.

    With τ = t - delay, τc = τ - Tc, P the plug-flow part f (∫_{τc}^{τ} Cp) and F_k, G_k = ∂F_k/∂k
    the exponential convolution at τc: C = P + E f F_k, ∂C/∂Tc = f (1 - E) Cp(τc) + E f k F_k,
    ∂C/∂delay = -f Cp(τ) + ∂C/∂Tc (per min), ∂C/∂f = C/f + f F_k ∂E/∂f + E f G_k ∂k/∂f - ∂C/∂Tc Tc/f.
    """
    f, E, e, k, Tc = _aath_rates(Fp, PS, ve, vp)
    dm = d / 60.0
    _zero2(J)
    expconv(acq[2], acq[1], acq[3], acq[4], 0.0, dm, f, J[:, 0], 0.0, J[:, 0], -f if has_delay else 0.0,
            J[:, 4 if has_delay else 0], 0.0, J[:, 0])
    expconv(acq[2], acq[1], acq[3], acq[4], 0.0, dm + Tc, -f, J[:, 0], 0.0, J[:, 0], 1.0, J[:, 1], 0.0, J[:, 0])
    expconv(acq[2], acq[1], acq[3], acq[4], k, dm + Tc, 1.0, J[:, 2], 1.0, J[:, 3], 0.0, J[:, 0], 0.0, J[:, 0])
    dE_df = -e * PS / (f * f)
    dE_dPS = e / f
    dk_df = (E + f * dE_df) / ve
    dk_dPS = f * dE_dPS / ve
    for i in range(J.shape[0]):
        P = J[i, 0]
        cpc = J[i, 1]
        Fk = J[i, 2]
        Gk = J[i, 3]
        C = P + E * f * Fk
        if want_out:
            out[i] = C
        dTc = f * e * cpc + E * f * k * Fk
        J[i, 0] = (C / f + f * Fk * dE_df + E * f * Gk * dk_df - dTc * Tc / f) / 100.0
        J[i, 1] = f * Fk * dE_dPS + E * f * Gk * dk_dPS
        J[i, 2] = -E * f * Gk * k / ve
        J[i, 3] = dTc / f
        if has_delay:
            J[i, 4] = (J[i, 4] + dTc) / 60.0


@njit(cache=True)
def aath_signal(p, acq, cov, out):
    """AATH; p = (Fp mL/min/100mL, PS 1/min, ve, vp)."""
    _aath_signal(p[0], p[1], p[2], p[3], 0.0, acq, out)


@njit(cache=True)
def aath_jacobian(p, acq, cov, J):
    _aath_jacobian(p[0], p[1], p[2], p[3], 0.0, acq, J, False, J[:, 0], False)


@njit(cache=True)
def aath_signal_jacobian(p, acq, cov, out, J):
    _aath_jacobian(p[0], p[1], p[2], p[3], 0.0, acq, J, False, out, True)


@njit(cache=True)
def aath_delay_signal(p, acq, cov, out):
    """AATH with delay; p = (Fp, PS, ve, vp, delay s)."""
    _aath_signal(p[0], p[1], p[2], p[3], p[4], acq, out)


@njit(cache=True)
def aath_delay_jacobian(p, acq, cov, J):
    _aath_jacobian(p[0], p[1], p[2], p[3], p[4], acq, J, True, J[:, 0], False)


@njit(cache=True)
def aath_delay_signal_jacobian(p, acq, cov, out, J):
    _aath_jacobian(p[0], p[1], p[2], p[3], p[4], acq, J, True, out, True)
