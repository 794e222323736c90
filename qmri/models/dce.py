"""DCE-MRI pharmacokinetic models: Tofts, extended Tofts, Patlak, 2CXM and 2CUM, with optional arterial delay.

Every model predicts the tissue concentration C(t) (mM) from the plasma concentration Cp(t) (mM) of
the arterial input function (AIF), sampled at the same frame times t (s). Internally time runs in
minutes so that ``Ktrans``, ``PS`` and the rate constants are in 1/min; at the interface time is
in seconds. Conventions and units follow OSIPI CAPLEX and the OSIPI DCE code collection tests:

=========  ===============  =========================================================
name       unit             meaning
=========  ===============  =========================================================
Ktrans     1/min            volume transfer constant
ve         (fraction)       extravascular extracellular volume fraction
vp         (fraction)       plasma volume fraction
kep        1/min            Ktrans / ve (derived output of Tofts and extended Tofts)
Fp         mL/min/100mL     plasma flow
PS         1/min            permeability–surface area product per unit tissue volume
delay      s                arterial delay; positive when the tissue curve arrives after the AIF
=========  ===============  =========================================================

Models (``f = Fp/100`` in 1/min, ``⊛`` convolution from the first frame, ``τ = t - delay``):

* Tofts (Tofts & Kermode, MRM 1991;17:357; Tofts et al., JMRI 1999;10:223)::

      C(t) = Ktrans · Cp ⊛ exp(-kep t)(τ),                    kep = Ktrans / ve
* extended Tofts (Tofts 1997, JMRI 7:91)::  C(t) = vp · Cp(τ) + Ktrans · Cp ⊛ exp(-kep t)(τ)
* Patlak (Patlak et al., JCBFM 1983;3:1)::   C(t) = vp · Cp(τ) + Ktrans · ∫₀^τ Cp
* two-compartment exchange, 2CXM (Sourbron & Buckley, PMB 2011;56:R1 / MRM 2011;66:735)::

      C(t) = f · Cp ⊛ [A exp(-k₊ t) + (1 - A) exp(-k₋ t)](τ)

  with k± the eigenvalues of the exchange system, ``k₊ + k₋ = (f + PS)/vp + PS/ve``,
  ``k₊ k₋ = f PS / (vp ve)`` and ``A = (k₊ - PS/ve - PS/vp) / (k₊ - k₋)`` (so that the impulse
  response starts at f and integrates to vp + ve).
* two-compartment uptake, 2CUM (the 2CXM with ve → ∞; Sourbron & Buckley 2011)::

      C(t) = f · Cp ⊛ [(1 - E) exp(-k t) + E](τ),   k = (f + PS)/vp,   E = PS/(f + PS)

Convolution (exact, O(n), any frame spacing): Cp is taken as piecewise linear between its samples
(0 before the first frame, constant after the last) and ``F(τ) = ∫ Cp(u) exp(-k(τ-u)) du`` is
computed by the recursion ``F(t_{j+1}) = e^{-kΔ} F(t_j) + Δ (Cp_j α(kΔ) + Cp_{j+1} β(kΔ))`` with
``α(x) = (1 - (1+x)e^{-x})/x²`` and ``β(x) = (x - 1 + e^{-x})/x²`` (series near x = 0), which is
exact for linear interpolation, together with its derivative in k (the exponential-integral scheme
of, e.g., Flouri et al., MRM 2016;76:998, and the recursive convolution of Gpufit's MRI models).
A delayed curve is evaluated between samples with the same formula over the partial segment, so
the delay derivative ``dF/dτ = Cp(τ) - k F(τ)`` is exact too.

Fitting (:class:`DCE`): a linear least-squares estimate (Murase, MRM 2004;51:858 for Tofts; the
twice-integrated forms of Flouri et al. 2016 for 2CXM/2CUM), evaluated on a 1 s grid of delays when
the delay is fitted, starts a bounded Levenberg–Marquardt fit with analytic Jacobians
(:func:`qmri.fitting.fit_lm`). Default bounds and starting values of the OSIPI tests: Ktrans and PS
0–5 /min, ve and vp 0–1, Fp 0–200 mL/min/100mL, delay ±10 s (lower bounds of ve, vp and Fp are
kept slightly above 0 where a rate would divide by them).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from qmri.errors import QMRIInputError
from qmri.fitting.lm import STATUS_FAILED, LMOptions, cholesky_solve, fit_lm
from qmri.fitting.result import FitResult
from qmri.models.base import Model, Parameter, SignalModel, register, resolve_bounds, resolve_initial

#: PK models by command-line name.
MODEL_NAMES = ("tofts", "etm", "patlak", "2cxm", "2cum")
#: Default delay bounds (s), OSIPI code collection.
DELAY_BOUNDS = (-10.0, 10.0)
_SERIES_X = 0.05
_CACHE_RTOL = 1e-11


# ---------------------------------------------------------------------------------------------
# Exact recursive convolution of a piecewise-linear input with exp(-k t)
# ---------------------------------------------------------------------------------------------
@nb.njit(cache=True, inline="always")
def _weights(x):
    """exp(-x), α(x), β(x) and their x-derivatives (series for |x| < 0.05)."""
    E = np.exp(-x)
    if abs(x) < _SERIES_X:
        a = 0.5 + x * (-1.0 / 3 + x * (1.0 / 8 + x * (-1.0 / 30 + x * (1.0 / 144 + x * (
            -1.0 / 840 + x * (1.0 / 5760 + x * (-1.0 / 45360)))))))
        b = 0.5 + x * (-1.0 / 6 + x * (1.0 / 24 + x * (-1.0 / 120 + x * (1.0 / 720 + x * (
            -1.0 / 5040 + x * (1.0 / 40320 + x * (-1.0 / 362880)))))))
        da = -1.0 / 3 + x * (2.0 / 8 + x * (-3.0 / 30 + x * (4.0 / 144 + x * (-5.0 / 840 + x * (
            6.0 / 5760 + x * (-7.0 / 45360 + x * (8.0 / 403200)))))))
        db = -1.0 / 6 + x * (2.0 / 24 + x * (-3.0 / 120 + x * (4.0 / 720 + x * (-5.0 / 5040 + x * (
            6.0 / 40320 + x * (-7.0 / 362880 + x * (8.0 / 3628800)))))))
    else:
        a = (1.0 - (1.0 + x) * E) / (x * x)
        b = (x - 1.0 + E) / (x * x)
        da = E / x - 2.0 * a / x
        db = (1.0 - E) / (x * x) - 2.0 * b / x
    return E, a, b, da, db


@nb.njit(cache=True)
def expconv(tm, c, sl, k, d, wF, oF, wG, oG, wC, oC, wS, oS):
    """Accumulate the exponential convolution of a piecewise-linear input and its by-products.

    For every frame i, with ``τ = tm[i] - d`` (minutes), adds ``wF·F(τ)`` to ``oF[i]``,
    ``wG·∂F/∂k(τ)`` to ``oG[i]``, ``wC·Cp(τ)`` to ``oC[i]`` and ``wS·dCp/dτ(τ)`` to ``oS[i]``
    (terms with zero weight are skipped; outputs may be the same array), where
    ``F(τ) = ∫_{tm[0]}^{τ} Cp(u) exp(-k (τ - u)) du``.

    Parameters
    ----------
    tm : ndarray (n,)
        Frame times in min, strictly increasing.
    c : ndarray (n,)
        Input samples (mM); linear between samples, 0 before tm[0], c[-1] after tm[-1].
    sl : ndarray (n,)
        Slope of each segment, ``(c[j+1] - c[j]) / (tm[j+1] - tm[j])`` (mM/min), 0 for the last.
    k : float
        Rate constant (1/min).
    d : float
        Delay (min).
    """
    n = tm.shape[0]
    t0 = tm[0]
    want_g = wG != 0.0
    hc = -1.0
    E1 = a1 = b1 = da1 = db1 = 0.0
    if d == 0.0:
        # frames are the knots: plain recursion
        F = 0.0
        G = 0.0
        for i in range(n):
            if i > 0:
                h = tm[i] - tm[i - 1]
                if abs(h - hc) > _CACHE_RTOL * h:
                    E1, a1, b1, da1, db1 = _weights(k * h)
                    hc = h
                if want_g:
                    G = E1 * G - h * E1 * F + h * h * (c[i - 1] * da1 + c[i] * db1)
                F = E1 * F + h * (c[i - 1] * a1 + c[i] * b1)
            if wF != 0.0:
                oF[i] += wF * F
            if want_g:
                oG[i] += wG * G
            if wC != 0.0:
                oC[i] += wC * c[i]
            if wS != 0.0:
                oS[i] += wS * sl[i]
        return
    j = 0
    tj = t0
    Fj = 0.0
    Gj = 0.0
    sc = -1.0
    E2 = a2 = b2 = da2 = db2 = 0.0
    for i in range(n):
        tau = tm[i] - d
        F = 0.0
        G = 0.0
        cp = 0.0
        slope = 0.0
        if tau >= t0:
            while j + 1 < n and tm[j + 1] <= tau:
                tn = tm[j + 1]
                h = tn - tj
                if abs(h - hc) > _CACHE_RTOL * h:
                    E1, a1, b1, da1, db1 = _weights(k * h)
                    hc = h
                if want_g:
                    Gj = E1 * Gj - h * E1 * Fj + h * h * (c[j] * da1 + c[j + 1] * db1)
                Fj = E1 * Fj + h * (c[j] * a1 + c[j + 1] * b1)
                j += 1
                tj = tn
            s = tau - tj
            c0 = c[j]
            slope = sl[j]
            cp = c0 + slope * s
            if s == 0.0:
                F = Fj
                G = Gj
            else:
                if abs(s - sc) > _CACHE_RTOL * s:
                    E2, a2, b2, da2, db2 = _weights(k * s)
                    sc = s
                F = E2 * Fj + s * (c0 * a2 + cp * b2)
                if want_g:
                    G = E2 * Gj - s * E2 * Fj + s * s * (c0 * da2 + cp * db2)
        if wF != 0.0:
            oF[i] += wF * F
        if want_g:
            oG[i] += wG * G
        if wC != 0.0:
            oC[i] += wC * cp
        if wS != 0.0:
            oS[i] += wS * slope


def acquisition(t, cp) -> np.ndarray:
    """The acquisition array of the DCE signal models, shape (n, 4).

    Columns: frame time (s), plasma concentration Cp (mM), frame time (min), slope of Cp on each
    segment (mM/min, 0 for the last frame).
    """
    t = np.asarray(t, dtype=np.float64)
    cp = np.asarray(cp, dtype=np.float64)
    tm = t / 60.0
    sl = np.zeros_like(cp)
    sl[:-1] = np.diff(cp) / np.diff(tm)
    return np.ascontiguousarray(np.stack([t, cp, tm, sl], axis=1))


def expconv_torch(t, c, k, d):
    """Torch twin of :func:`expconv`: ``F(τ)`` and ``Cp(τ)`` for a batch.

    Parameters
    ----------
    t, c : tensor (n,)
        Frame times (s) and input samples (mM).
    k, d : tensor (N,)
        Rate constants (1/min) and delays (min).

    Returns
    -------
    F, cp : tensors (N, n)
    """
    import torch

    tm = t / 60.0
    n = t.shape[0]
    k = k[:, None] if k.ndim == 1 else k
    h = tm[1:] - tm[:-1]                                    # (n-1,)
    E, a, b = _weights_torch(k * h)                         # (N, n-1)
    inc = h * (c[:-1] * a + c[1:] * b)
    knots = [torch.zeros_like(k[:, 0])]
    for j in range(n - 1):
        knots.append(E[:, j] * knots[-1] + inc[:, j])
    Fk = torch.stack(knots, dim=1)                          # (N, n)
    tau = tm[None, :] - d[:, None]
    before = tau < tm[0]
    jj = torch.clamp(torch.searchsorted(tm.contiguous(), tau.contiguous(), right=True) - 1, 0, n - 1)
    s = torch.where(before, torch.zeros_like(tau), tau - tm[jj])
    slope_k = torch.zeros_like(tm)
    slope_k[:-1] = (c[1:] - c[:-1]) / h
    c0 = c[jj]
    cp = c0 + slope_k[jj] * s
    E2, a2, b2 = _weights_torch(k * s)
    F = E2 * torch.gather(Fk, 1, jj) + s * (c0 * a2 + cp * b2)
    zero = torch.zeros_like(F)
    return torch.where(before, zero, F), torch.where(before, zero, cp)


def _weights_torch(x):
    import torch

    small = x.abs() < _SERIES_X
    xs = torch.where(small, torch.full_like(x, 1.0), x)
    E = torch.exp(-x)
    a_closed = (1.0 - (1.0 + xs) * torch.exp(-xs)) / (xs * xs)
    b_closed = (xs - 1.0 + torch.exp(-xs)) / (xs * xs)
    a_ser = 0.5 + x * (-1.0 / 3 + x * (1.0 / 8 + x * (-1.0 / 30 + x * (1.0 / 144 + x * (
        -1.0 / 840 + x * (1.0 / 5760 + x * (-1.0 / 45360)))))))
    b_ser = 0.5 + x * (-1.0 / 6 + x * (1.0 / 24 + x * (-1.0 / 120 + x * (1.0 / 720 + x * (
        -1.0 / 5040 + x * (1.0 / 40320 + x * (-1.0 / 362880)))))))
    return E, torch.where(small, a_ser, a_closed), torch.where(small, b_ser, b_closed)


# ---------------------------------------------------------------------------------------------
# Model kernels. acq[:, 0] = frame time (s), acq[:, 1] = Cp (mM). Delay d in s -> d/60 min.
# ---------------------------------------------------------------------------------------------
@nb.njit(cache=True)
def _zero(a):
    for i in range(a.shape[0]):
        a[i] = 0.0


@nb.njit(cache=True)
def _zero2(J):
    for i in range(J.shape[0]):
        for q in range(J.shape[1]):
            J[i, q] = 0.0


@nb.njit(cache=True)
def _tofts_signal(Kt, ve, vp, d, acq, out):
    _zero(out)
    expconv(acq[:, 2], acq[:, 1], acq[:, 3], Kt / ve, d / 60.0, Kt, out, 0.0, out, vp, out, 0.0, out)


@nb.njit(cache=True)
def _tofts_jacobian(Kt, ve, vp, d, acq, J, has_vp, has_delay, out, want_out):
    """Columns: Ktrans, ve, [vp], [delay]; with ``want_out`` also the signal into ``out``."""
    _zero2(J)
    k = Kt / ve
    both = has_vp and has_delay
    wC = 1.0 if (has_vp or has_delay) else 0.0
    expconv(acq[:, 2], acq[:, 1], acq[:, 3], k, d / 60.0, 1.0, J[:, 0], 1.0, J[:, 1], wC, J[:, 2 if wC else 0],
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


@nb.njit(cache=True)
def tofts_signal(p, acq, out):
    """Tofts; p = (Ktrans 1/min, ve)."""
    _tofts_signal(p[0], p[1], 0.0, 0.0, acq, out)


@nb.njit(cache=True)
def tofts_jacobian(p, acq, J):
    _tofts_jacobian(p[0], p[1], 0.0, 0.0, acq, J, False, False, J[:, 0], False)


@nb.njit(cache=True)
def tofts_signal_jacobian(p, acq, out, J):
    _tofts_jacobian(p[0], p[1], 0.0, 0.0, acq, J, False, False, out, True)


@nb.njit(cache=True)
def tofts_delay_signal(p, acq, out):
    """Tofts with delay; p = (Ktrans 1/min, ve, delay s)."""
    _tofts_signal(p[0], p[1], 0.0, p[2], acq, out)


@nb.njit(cache=True)
def tofts_delay_jacobian(p, acq, J):
    _tofts_jacobian(p[0], p[1], 0.0, p[2], acq, J, False, True, J[:, 0], False)


@nb.njit(cache=True)
def tofts_delay_signal_jacobian(p, acq, out, J):
    _tofts_jacobian(p[0], p[1], 0.0, p[2], acq, J, False, True, out, True)


@nb.njit(cache=True)
def etm_signal(p, acq, out):
    """Extended Tofts; p = (Ktrans 1/min, ve, vp)."""
    _tofts_signal(p[0], p[1], p[2], 0.0, acq, out)


@nb.njit(cache=True)
def etm_jacobian(p, acq, J):
    _tofts_jacobian(p[0], p[1], p[2], 0.0, acq, J, True, False, J[:, 0], False)


@nb.njit(cache=True)
def etm_signal_jacobian(p, acq, out, J):
    _tofts_jacobian(p[0], p[1], p[2], 0.0, acq, J, True, False, out, True)


@nb.njit(cache=True)
def etm_delay_signal(p, acq, out):
    """Extended Tofts with delay; p = (Ktrans 1/min, ve, vp, delay s)."""
    _tofts_signal(p[0], p[1], p[2], p[3], acq, out)


@nb.njit(cache=True)
def etm_delay_jacobian(p, acq, J):
    _tofts_jacobian(p[0], p[1], p[2], p[3], acq, J, True, True, J[:, 0], False)


@nb.njit(cache=True)
def etm_delay_signal_jacobian(p, acq, out, J):
    _tofts_jacobian(p[0], p[1], p[2], p[3], acq, J, True, True, out, True)


@nb.njit(cache=True)
def _patlak_signal(Kt, vp, d, acq, out):
    _zero(out)
    expconv(acq[:, 2], acq[:, 1], acq[:, 3], 0.0, d / 60.0, Kt, out, 0.0, out, vp, out, 0.0, out)


@nb.njit(cache=True)
def _patlak_jacobian(Kt, vp, d, acq, J, has_delay, out, want_out):
    """Columns: Ktrans, vp, [delay]; with ``want_out`` also the signal into ``out``."""
    _zero2(J)
    expconv(acq[:, 2], acq[:, 1], acq[:, 3], 0.0, d / 60.0, 1.0, J[:, 0], 0.0, J[:, 0], 1.0, J[:, 1],
            1.0 if has_delay else 0.0, J[:, 2 if has_delay else 0])
    for i in range(J.shape[0]):
        if want_out:
            out[i] = Kt * J[i, 0] + vp * J[i, 1]
        if has_delay:
            J[i, 2] = -(Kt * J[i, 1] + vp * J[i, 2]) / 60.0


@nb.njit(cache=True)
def patlak_signal(p, acq, out):
    """Patlak; p = (Ktrans 1/min, vp)."""
    _patlak_signal(p[0], p[1], 0.0, acq, out)


@nb.njit(cache=True)
def patlak_jacobian(p, acq, J):
    _patlak_jacobian(p[0], p[1], 0.0, acq, J, False, J[:, 0], False)


@nb.njit(cache=True)
def patlak_signal_jacobian(p, acq, out, J):
    _patlak_jacobian(p[0], p[1], 0.0, acq, J, False, out, True)


@nb.njit(cache=True)
def patlak_delay_signal(p, acq, out):
    """Patlak with delay; p = (Ktrans 1/min, vp, delay s)."""
    _patlak_signal(p[0], p[1], p[2], acq, out)


@nb.njit(cache=True)
def patlak_delay_jacobian(p, acq, J):
    _patlak_jacobian(p[0], p[1], p[2], acq, J, True, J[:, 0], False)


@nb.njit(cache=True)
def patlak_delay_signal_jacobian(p, acq, out, J):
    _patlak_jacobian(p[0], p[1], p[2], acq, J, True, out, True)


@nb.njit(cache=True)
def _cum_signal(Fp, PS, vp, d, acq, out):
    f = Fp / 100.0
    u = f + PS
    _zero(out)
    dm = d / 60.0
    expconv(acq[:, 2], acq[:, 1], acq[:, 3], u / vp, dm, f * f / u, out, 0.0, out, 0.0, out, 0.0, out)
    expconv(acq[:, 2], acq[:, 1], acq[:, 3], 0.0, dm, f * PS / u, out, 0.0, out, 0.0, out, 0.0, out)


@nb.njit(cache=True)
def _cum_jacobian(Fp, PS, vp, d, acq, J, has_delay, out, want_out):
    """Columns: Fp, PS, vp, [delay]; with ``want_out`` also the signal into ``out``."""
    f = Fp / 100.0
    u = f + PS
    k = u / vp
    dm = d / 60.0
    _zero2(J)
    expconv(acq[:, 2], acq[:, 1], acq[:, 3], k, dm, 1.0, J[:, 0], 1.0, J[:, 1], 0.0, J[:, 0], 0.0, J[:, 0])
    expconv(acq[:, 2], acq[:, 1], acq[:, 3], 0.0, dm, 1.0, J[:, 2], 0.0, J[:, 0], 1.0 if has_delay else 0.0,
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


@nb.njit(cache=True)
def twocum_signal(p, acq, out):
    """2CUM; p = (Fp mL/min/100mL, PS 1/min, vp)."""
    _cum_signal(p[0], p[1], p[2], 0.0, acq, out)


@nb.njit(cache=True)
def twocum_jacobian(p, acq, J):
    _cum_jacobian(p[0], p[1], p[2], 0.0, acq, J, False, J[:, 0], False)


@nb.njit(cache=True)
def twocum_signal_jacobian(p, acq, out, J):
    _cum_jacobian(p[0], p[1], p[2], 0.0, acq, J, False, out, True)


@nb.njit(cache=True)
def twocum_delay_signal(p, acq, out):
    """2CUM with delay; p = (Fp, PS, vp, delay s)."""
    _cum_signal(p[0], p[1], p[2], p[3], acq, out)


@nb.njit(cache=True)
def twocum_delay_jacobian(p, acq, J):
    _cum_jacobian(p[0], p[1], p[2], p[3], acq, J, True, J[:, 0], False)


@nb.njit(cache=True)
def twocum_delay_signal_jacobian(p, acq, out, J):
    _cum_jacobian(p[0], p[1], p[2], p[3], acq, J, True, out, True)


@nb.njit(cache=True)
def _cxm_rates(f, PS, ve, vp):
    S = (f + PS) / vp + PS / ve
    P = f * PS / (vp * ve)
    Q = PS / ve + PS / vp
    D = np.sqrt(max(S * S - 4.0 * P, 0.0))
    kp = 0.5 * (S + D)
    km = 0.5 * (S - D)
    A = (kp - Q) / D
    return S, P, Q, D, kp, km, A


@nb.njit(cache=True)
def _cxm_partial(S, D, A, dS, dP, dQ):
    """Derivatives of k+, k- and A from those of S = k+ + k-, P = k+ k- and Q."""
    dD = (S * dS - 2.0 * dP) / D
    dkp = 0.5 * (dS + dD)
    dkm = 0.5 * (dS - dD)
    return dkp, dkm, (dkp - dQ) / D - A * dD / D


@nb.njit(cache=True)
def _cxm_signal(Fp, PS, ve, vp, d, acq, out):
    f = Fp / 100.0
    S, P, Q, D, kp, km, A = _cxm_rates(f, PS, ve, vp)
    _zero(out)
    dm = d / 60.0
    expconv(acq[:, 2], acq[:, 1], acq[:, 3], kp, dm, f * A, out, 0.0, out, 0.0, out, 0.0, out)
    expconv(acq[:, 2], acq[:, 1], acq[:, 3], km, dm, f * (1.0 - A), out, 0.0, out, 0.0, out, 0.0, out)


@nb.njit(cache=True)
def _cxm_jacobian(Fp, PS, ve, vp, d, acq, J, has_delay, out, want_out):
    """Columns: Fp, PS, ve, vp, [delay]; with ``want_out`` also the signal into ``out``."""
    f = Fp / 100.0
    S, P, Q, D, kp, km, A = _cxm_rates(f, PS, ve, vp)
    dm = d / 60.0
    _zero2(J)
    expconv(acq[:, 2], acq[:, 1], acq[:, 3], kp, dm, 1.0, J[:, 0], 1.0, J[:, 1], 1.0 if has_delay else 0.0,
            J[:, 4 if has_delay else 0], 0.0, J[:, 0])
    expconv(acq[:, 2], acq[:, 1], acq[:, 3], km, dm, 1.0, J[:, 2], 1.0, J[:, 3], 0.0, J[:, 0], 0.0, J[:, 0])
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


@nb.njit(cache=True)
def twocxm_signal(p, acq, out):
    """2CXM; p = (Fp mL/min/100mL, PS 1/min, ve, vp)."""
    _cxm_signal(p[0], p[1], p[2], p[3], 0.0, acq, out)


@nb.njit(cache=True)
def twocxm_jacobian(p, acq, J):
    _cxm_jacobian(p[0], p[1], p[2], p[3], 0.0, acq, J, False, J[:, 0], False)


@nb.njit(cache=True)
def twocxm_signal_jacobian(p, acq, out, J):
    _cxm_jacobian(p[0], p[1], p[2], p[3], 0.0, acq, J, False, out, True)


@nb.njit(cache=True)
def twocxm_delay_signal(p, acq, out):
    """2CXM with delay; p = (Fp, PS, ve, vp, delay s)."""
    _cxm_signal(p[0], p[1], p[2], p[3], p[4], acq, out)


@nb.njit(cache=True)
def twocxm_delay_jacobian(p, acq, J):
    _cxm_jacobian(p[0], p[1], p[2], p[3], p[4], acq, J, True, J[:, 0], False)


@nb.njit(cache=True)
def twocxm_delay_signal_jacobian(p, acq, out, J):
    _cxm_jacobian(p[0], p[1], p[2], p[3], p[4], acq, J, True, out, True)


# ---------------------------------------------------------------------------------------------
# torch twins (same equations, differentiable, batched over voxels)
# ---------------------------------------------------------------------------------------------
def _torch_parts(acq):
    return acq[:, 0], acq[:, 1]


def _delay_min(params, idx):
    import torch

    return params[:, idx] / 60.0 if idx is not None else torch.zeros_like(params[:, 0])


def _tofts_torch(params, acq, has_vp, delay_idx):
    t, c = _torch_parts(acq)
    Kt, ve = params[:, 0], params[:, 1]
    F, cp = expconv_torch(t, c, Kt / ve, _delay_min(params, delay_idx))
    out = Kt[:, None] * F
    if has_vp:
        out = out + params[:, 2:3] * cp
    return out


def _patlak_torch(params, acq, delay_idx):
    import torch

    t, c = _torch_parts(acq)
    F, cp = expconv_torch(t, c, torch.zeros_like(params[:, 0]), _delay_min(params, delay_idx))
    return params[:, 0:1] * F + params[:, 1:2] * cp


def _cum_torch(params, acq, delay_idx):
    import torch

    t, c = _torch_parts(acq)
    f, PS, vp = params[:, 0] / 100.0, params[:, 1], params[:, 2]
    u = f + PS
    dm = _delay_min(params, delay_idx)
    F, _ = expconv_torch(t, c, u / vp, dm)
    F0, _ = expconv_torch(t, c, torch.zeros_like(f), dm)
    return (f * f / u)[:, None] * F + (f * PS / u)[:, None] * F0


def _cxm_torch(params, acq, delay_idx):
    import torch

    t, c = _torch_parts(acq)
    f, PS, ve, vp = params[:, 0] / 100.0, params[:, 1], params[:, 2], params[:, 3]
    S = (f + PS) / vp + PS / ve
    P = f * PS / (vp * ve)
    Q = PS / ve + PS / vp
    D = torch.sqrt(torch.clamp(S * S - 4.0 * P, min=0.0))
    kp, km = 0.5 * (S + D), 0.5 * (S - D)
    A = (kp - Q) / D
    dm = _delay_min(params, delay_idx)
    Fp_, _ = expconv_torch(t, c, kp, dm)
    Fm_, _ = expconv_torch(t, c, km, dm)
    return f[:, None] * (A[:, None] * Fp_ + (1.0 - A)[:, None] * Fm_)


# ---------------------------------------------------------------------------------------------
# Declarations
# ---------------------------------------------------------------------------------------------
def example_aif(t):
    """A smooth bolus-like test input Cp(t) (mM) at times t (s): zero until 10 s, peak 8 mM at 12.4 s."""
    tm = np.maximum(np.asarray(t, float) - 10.0, 0.0) / 60.0
    return 8.0 * (tm / 0.04) * np.exp(1.0 - tm / 0.04) + 1.2 * (1.0 - np.exp(-tm / 0.1)) * np.exp(-0.2 * tm)


def _example_acquisition():
    # non-uniform frame times (s): dense at the bolus, sparse later
    t = np.concatenate([np.arange(0.0, 60.0, 2.0), 60.0 + np.cumsum(np.linspace(3.0, 9.0, 30))])
    return acquisition(t, example_aif(t))


_ACQ_DOC = ("acq[:, 0]: frame times in s (strictly increasing); acq[:, 1]: plasma concentration Cp of the AIF in mM; "
            "acq[:, 2]: frame times in min; acq[:, 3]: slope of Cp per segment in mM/min (see acquisition())")
_P = {
    "Ktrans": Parameter("Ktrans", "1/min", 0.0, 5.0, 0.1, "volume transfer constant"),
    "ve": Parameter("ve", "", 1e-3, 1.0, 0.2, "extravascular extracellular volume fraction"),
    "vp": Parameter("vp", "", 0.0, 1.0, 0.02, "plasma volume fraction"),
    "vp+": Parameter("vp", "", 1e-3, 1.0, 0.05, "plasma volume fraction"),
    "Fp": Parameter("Fp", "mL/min/100mL", 1e-2, 200.0, 20.0, "plasma flow"),
    "PS": Parameter("PS", "1/min", 0.0, 5.0, 0.05, "permeability-surface area product per unit tissue volume"),
    "delay": Parameter("delay", "s", DELAY_BOUNDS[0], DELAY_BOUNDS[1], 0.0,
                       "arterial delay, positive when the tissue curve arrives after the AIF"),
}
_REFS = {
    "tofts": "Tofts & Kermode, MRM 1991;17:357; Tofts et al., JMRI 1999;10:223",
    "etm": "Tofts, JMRI 1997;7:91 (extended Tofts)",
    "patlak": "Patlak, Blasberg & Fenstermacher, JCBFM 1983;3:1",
    "2cxm": "Sourbron & Buckley, PMB 2011;56:R1 and MRM 2011;66:735 (two-compartment exchange)",
    "2cum": "Sourbron & Buckley, PMB 2011;56:R1 (two-compartment uptake)",
}
_PARAMS = {
    "tofts": ("Ktrans", "ve"),
    "etm": ("Ktrans", "ve", "vp"),
    "patlak": ("Ktrans", "vp"),
    "2cxm": ("Fp", "PS", "ve", "vp+"),
    "2cum": ("Fp", "PS", "vp+"),
}
_KERNELS = {
    ("tofts", False): (tofts_signal, tofts_jacobian, tofts_signal_jacobian,
        lambda P, a: _tofts_torch(P, a, False, None)),
    ("tofts", True): (tofts_delay_signal, tofts_delay_jacobian, tofts_delay_signal_jacobian,
        lambda P, a: _tofts_torch(P, a, False, 2)),
    ("etm", False): (etm_signal, etm_jacobian, etm_signal_jacobian,
        lambda P, a: _tofts_torch(P, a, True, None)),
    ("etm", True): (etm_delay_signal, etm_delay_jacobian, etm_delay_signal_jacobian,
        lambda P, a: _tofts_torch(P, a, True, 3)),
    ("patlak", False): (patlak_signal, patlak_jacobian, patlak_signal_jacobian,
        lambda P, a: _patlak_torch(P, a, None)),
    ("patlak", True): (patlak_delay_signal, patlak_delay_jacobian, patlak_delay_signal_jacobian,
        lambda P, a: _patlak_torch(P, a, 2)),
    ("2cxm", False): (twocxm_signal, twocxm_jacobian, twocxm_signal_jacobian,
        lambda P, a: _cxm_torch(P, a, None)),
    ("2cxm", True): (twocxm_delay_signal, twocxm_delay_jacobian, twocxm_delay_signal_jacobian,
        lambda P, a: _cxm_torch(P, a, 4)),
    ("2cum", False): (twocum_signal, twocum_jacobian, twocum_signal_jacobian,
        lambda P, a: _cum_torch(P, a, None)),
    ("2cum", True): (twocum_delay_signal, twocum_delay_jacobian, twocum_delay_signal_jacobian,
        lambda P, a: _cum_torch(P, a, 3)),
}

#: Declared DCE signal models by (model name, fit_delay).
DCE_MODELS: dict[tuple[str, bool], SignalModel] = {}
for (_name, _delay), (_sig, _jac, _sj, _torch) in _KERNELS.items():
    _params = tuple(_P[k] for k in _PARAMS[_name]) + ((_P["delay"],) if _delay else ())
    DCE_MODELS[(_name, _delay)] = register(SignalModel(
        name=f"dce_{_name}" + ("_delay" if _delay else ""),
        parameters=_params,
        signal=_sig,
        jacobian=_jac,
        signal_jacobian=_sj,
        torch_signal=_torch,
        acquisition_doc=_ACQ_DOC,
        example_acquisition=_example_acquisition,
        reference=_REFS[_name] + "; exact recursive convolution for piecewise-linear Cp",
    ))


# ---------------------------------------------------------------------------------------------
# Linear starting values (integrated model equations), on a grid of delays
# ---------------------------------------------------------------------------------------------
#: For each model: number of voxel columns (-∫C, -∫∫C) and the shared columns of Cp(τ) used.
#: C = Σ β_a col_a; shared columns are drawn from (Cp, ∫Cp, ∫∫Cp).
_LINEAR_FORM = {
    "tofts": (1, (1,)),         # C = -kep ∫C + Ktrans ∫Cp                        (Murase 2004)
    "etm": (1, (0, 1)),         # C = -kep ∫C + vp Cp + (Ktrans + kep vp) ∫Cp
    "patlak": (0, (0, 1)),      # C = vp Cp + Ktrans ∫Cp
    "2cum": (1, (1, 2)),        # C = -k ∫C + f ∫Cp + f PS/vp ∫∫Cp                (Flouri 2016)
    "2cxm": (2, (1, 2)),        # C = -S ∫C - P ∫∫C + f ∫Cp + f Q ∫∫Cp   (S = k₊ + k₋, P = k₊ k₋)
}
_LBLOCK = 64


@nb.njit(cache=True, inline="always")
def _lcol(a, i, nv, I1, I2, X, dd):
    if a < nv:
        return I1[i] if a == 0 else I2[i]
    return X[dd, i, a - nv]


@nb.njit(parallel=True, cache=True)
def _linear_batch(tm, Y, X, nv, coef, best):
    """Least squares of C on [∫C, ∫∫C][:nv] + X[d] for every delay d; keep the best delay."""
    n, m = Y.shape
    nd = X.shape[0]
    q = nv + X.shape[2]
    nblocks = (n + _LBLOCK - 1) // _LBLOCK
    for blk in nb.prange(nblocks):
        I1 = np.zeros(m)
        I2 = np.zeros(m)
        A = np.empty((q, q))
        M = np.empty((q, q))
        r = np.empty(q)
        rs = np.empty(q)
        z = np.empty(q)
        sc = np.empty(q)
        L = np.zeros((q, q))
        for v in range(blk * _LBLOCK, min(n, (blk + 1) * _LBLOCK)):
            y = Y[v]
            ok = True
            for i in range(m):
                if not np.isfinite(y[i]):
                    ok = False
            best[v] = -1
            for a in range(q):
                coef[v, a] = np.nan
            if not ok:
                continue
            for i in range(1, m):
                h = tm[i] - tm[i - 1]
                I1[i] = I1[i - 1] - 0.5 * h * (y[i] + y[i - 1])
                I2[i] = I2[i - 1] + 0.5 * h * (I1[i] + I1[i - 1])
            yy = 0.0
            for i in range(m):
                yy += y[i] * y[i]
            best_ssr = np.inf
            for dd in range(nd):
                for a in range(q):
                    s = 0.0
                    for i in range(m):
                        s += _lcol(a, i, nv, I1, I2, X, dd) * y[i]
                    r[a] = s
                    for b in range(a, q):
                        s = 0.0
                        for i in range(m):
                            s += _lcol(a, i, nv, I1, I2, X, dd) * _lcol(b, i, nv, I1, I2, X, dd)
                        A[a, b] = s
                        A[b, a] = s
                for a in range(q):
                    sc[a] = np.sqrt(A[a, a]) if A[a, a] > 0.0 else 1.0
                for a in range(q):
                    for b in range(q):
                        M[a, b] = A[a, b] / (sc[a] * sc[b])
                    M[a, a] += 1e-10
                    rs[a] = r[a] / sc[a]
                if not cholesky_solve(M, rs, z, L, q):
                    continue
                ssr = yy
                for a in range(q):
                    ssr -= z[a] / sc[a] * r[a]
                if ssr < best_ssr:
                    best_ssr = ssr
                    best[v] = dd
                    for a in range(q):
                        coef[v, a] = z[a] / sc[a]


def _cumtrapz(t, y):
    out = np.zeros_like(y)
    out[..., 1:] = np.cumsum(0.5 * np.diff(t) * (y[..., 1:] + y[..., :-1]), axis=-1)
    return out


def _coefficients_to_params(name, beta):
    """Model parameters from the linear coefficients (NaN where the combination is not physical)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "tofts":
            kep, Kt = beta[:, 0], beta[:, 1]
            return [Kt, Kt / kep]
        if name == "etm":
            kep, vp, c = beta[:, 0], beta[:, 1], beta[:, 2]
            Kt = c - kep * vp
            return [Kt, Kt / kep, vp]
        if name == "patlak":
            return [beta[:, 1], beta[:, 0]]
        if name == "2cum":
            k, f, g = beta[:, 0], beta[:, 1], beta[:, 2]
            vp = f / (k - g / f)
            return [100.0 * f, vp * g / f, vp]
        S, P, f, fQ = beta[:, 0], beta[:, 1], beta[:, 2], beta[:, 3]
        Q = fQ / f
        vp = f / (S - Q)
        kb = P / (S - Q)                        # PS / ve
        PS = vp * (Q - kb)
        return [100.0 * f, PS, PS / kb, vp]


# ---------------------------------------------------------------------------------------------
# User-facing model
# ---------------------------------------------------------------------------------------------
class DCE(Model):
    """A pharmacokinetic model bound to frame times and an arterial input function.

    Parameters
    ----------
    t : array_like, shape (n,)
        Frame times in s, strictly increasing (non-uniform spacing is fine).
    aif : array_like, shape (n,)
        Plasma concentration Cp of the AIF at the frame times, in mM (whole-blood curves must be
        divided by 1 - Hct first; see :mod:`qmri.models.aif`).
    model : {"tofts", "etm", "patlak", "2cxm", "2cum"}
        Pharmacokinetic model (see the module docstring for equations and sources).
    fit_delay : bool
        Also fit an arterial delay (s, bounded ±10 s; positive when the tissue arrives later than
        the AIF).
    bounds : dict, optional
        ``{name: (lower, upper)}`` overriding the default bounds (OSIPI code collection).
    initial_guess : dict, optional
        Start values used where the linear estimate is not physical.
    delay_step : float
        Spacing (s) of the delay grid searched by the linear start (default 1 s).
    lm_options : qmri.fitting.LMOptions, optional

    Methods
    -------
    ``lsq`` (default): bounded Levenberg–Marquardt from the linear estimate. ``linear``: the
    linear estimate alone (clipped into the bounds; fast, biased with noise).

    Outputs: the model parameters (units in the module docstring) and, for Tofts and extended
    Tofts, the derived ``kep = Ktrans/ve`` (1/min).

    Raises
    ------
    QMRIInputError
        Unknown model, times not strictly increasing or not finite, AIF of the wrong length or not
        finite, bad bounds.

    Examples
    --------
    >>> import numpy as np
    >>> from qmri.models.dce import DCE, example_aif
    >>> t = np.arange(0, 300, 2.0)
    >>> m = DCE(t, example_aif(t), "tofts")
    >>> c = m.concentration(dict(Ktrans=0.2, ve=0.3))
    >>> round(float(m.fit(c[None])["Ktrans"][0]), 4)
    0.2
    """

    methods = ("lsq", "linear")
    default_method = "lsq"

    def __init__(self, t, aif, model: str = "tofts", *, fit_delay: bool = False, bounds=None,
                 initial_guess=None, delay_step: float = 1.0, lm_options: LMOptions | None = None):
        if model not in MODEL_NAMES:
            raise QMRIInputError(f"unknown DCE model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
        t = np.asarray(t, dtype=np.float64)
        cp = np.asarray(aif, dtype=np.float64)
        if t.ndim != 1 or t.size < 3:
            raise QMRIInputError(f"frame times must be a 1-D list of at least 3 values, got shape {t.shape}")
        if not np.all(np.isfinite(t)):
            raise QMRIInputError("frame times must be finite numbers (s)")
        if np.any(np.diff(t) <= 0):
            i = int(np.flatnonzero(np.diff(t) <= 0)[0])
            raise QMRIInputError(f"frame times must be strictly increasing; time {i + 1} ({t[i + 1]:g} s) "
                                 f"follows {t[i]:g} s")
        if cp.shape != t.shape:
            raise QMRIInputError(f"AIF has {cp.size} samples but there are {t.size} frame times")
        if not np.all(np.isfinite(cp)):
            raise QMRIInputError("AIF contains non-finite values")
        self.model = model
        self.fit_delay = bool(fit_delay)
        self.spec = DCE_MODELS[(model, self.fit_delay)]
        self.t = t
        self.aif = cp
        self.n_measurements = t.size
        self.lower, self.upper = resolve_bounds(self.spec, bounds)
        self.initial = np.clip(resolve_initial(self.spec, initial_guess), self.lower, self.upper)
        self.lm_options = lm_options or LMOptions()
        self.delay_step = float(delay_step)
        self._acq = acquisition(t, cp)
        self._delays = self._delay_grid()
        self._X = self._shared_columns()

    # Forward model ---------------------------------------------------------------------------
    def concentration(self, params) -> np.ndarray:
        """Noise-free tissue concentration (mM) for parameters given as a dict of scalars or arrays.

        Keys are the model's parameter names (``delay`` in s may be given, default 0, also when the
        delay is not fitted). Returns shape ``broadcast(params).shape + (n,)``.
        """
        spec = DCE_MODELS[(self.model, True)]
        vals = [np.asarray(params.get(k, 0.0) if k == "delay" else params[k], dtype=np.float64) for k in spec.names]
        arrays = np.broadcast_arrays(*vals)
        P = np.stack([a.ravel() for a in arrays], axis=1)
        return spec.evaluate(P, self._acq).reshape(arrays[0].shape + (self.n_measurements,))

    # Starting values ---------------------------------------------------------------------------
    def _delay_grid(self):
        if not self.fit_delay:
            return np.zeros(1)
        j = self.spec.names.index("delay")
        lo, hi = self.lower[j], self.upper[j]
        if self.delay_step <= 0:
            raise QMRIInputError(f"delay step must be positive, got {self.delay_step}")
        grid = np.arange(np.ceil(lo / self.delay_step), np.floor(hi / self.delay_step) + 1) * self.delay_step
        return grid if grid.size else np.array([0.5 * (lo + hi)])

    def _shared_columns(self):
        nv, cols = _LINEAR_FORM[self.model]
        m = self.n_measurements
        X = np.zeros((self._delays.size, m, len(cols)))
        tm = self.t / 60.0
        for di, d in enumerate(self._delays):
            F0 = np.zeros(m)
            cpd = np.zeros(m)
            expconv(self._acq[:, 2], self.aif, self._acq[:, 3], 0.0, d / 60.0, 1.0, F0, 0.0, F0, 1.0, cpd, 0.0, F0)
            base = [cpd, F0, _cumtrapz(tm, F0)]
            for a, col in enumerate(cols):
                X[di, :, a] = base[col]
        return X

    def linear_estimate(self, Y) -> np.ndarray:
        """Starting values (n, n_params) from the linear integrated forms (clipped into the bounds)."""
        nv, cols = _LINEAR_FORM[self.model]
        n = Y.shape[0]
        coef = np.empty((n, nv + len(cols)))
        best = np.empty(n, dtype=np.int64)
        _linear_batch(self.t / 60.0, Y, self._X, nv, coef, best)
        vals = _coefficients_to_params(self.model, coef)
        if self.fit_delay:
            vals.append(np.where(best >= 0, self._delays[np.maximum(best, 0)], np.nan))
        P = np.stack(vals, axis=1)
        bad = ~np.isfinite(P) | (P < self.lower) | (P > self.upper)
        # keep physical estimates; replace the others by the default start (delay: clip)
        P = np.where(bad, self.initial[None, :], P)
        return np.ascontiguousarray(np.clip(P, self.lower, self.upper))

    # Fitting ---------------------------------------------------------------------------------
    def output_units(self, method):
        units = dict(self.spec.units)
        if self.model in ("tofts", "etm"):
            units["kep"] = "1/min"
        return units

    def provenance(self, method):
        return {
            "pk_model": self.model,
            "fit_delay": self.fit_delay,
            "frame_times_s": self.t.tolist(),
            "aif_cp_mM": self.aif.tolist(),
            "units": self.output_units(method),
            "bounds": {n: [float(a), float(b)] for n, a, b in zip(self.spec.names, self.lower, self.upper)},
            "delay_convention": "positive when the tissue curve arrives later than the AIF",
            "reference": self.spec.reference,
        }

    def _fit_voxels(self, Y, method, compute_se):
        n = Y.shape[0]
        p0 = self.linear_estimate(Y)
        if method == "linear":
            fitted = self.spec.evaluate(p0, self._acq)
            resid = fitted - Y
            ssr = np.sum(resid ** 2, axis=1)
            sst = np.sum((Y - Y.mean(axis=1, keepdims=True)) ** 2, axis=1)
            bad = ~np.all(np.isfinite(Y), axis=1) | ~np.any(Y != 0, axis=1)  # as the LM engine
            with np.errstate(invalid="ignore", divide="ignore"):
                res = FitResult(params={k: p0[:, j].copy() for j, k in enumerate(self.spec.names)},
                                status=np.where(bad, STATUS_FAILED, 0).astype(np.int8),
                                n_iter=np.zeros(n, np.int32), rmse=np.sqrt(ssr / Y.shape[1]),
                                r2=np.where(sst > 0, 1.0 - ssr / sst, np.nan))
            for arr in list(res.params.values()) + [res.rmse, res.r2]:
                arr[bad] = np.nan
        else:
            opts = self.lm_options
            if compute_se != opts.compute_se:
                opts = LMOptions(opts.max_iter, opts.xtol, opts.ftol, opts.gtol, compute_se)
            res = fit_lm(self.spec, self._acq, Y, p0, lower=self.lower, upper=self.upper, options=opts)
        if self.model in ("tofts", "etm"):
            with np.errstate(divide="ignore", invalid="ignore"):
                res.params["kep"] = res.params["Ktrans"] / res.params["ve"]
        return res
