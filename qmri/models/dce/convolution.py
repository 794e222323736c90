"""Exact O(n) convolution of a piecewise-linear arterial input with exp(-k t), in Numba and torch.

The arterial input keeps its own time grid: the convolution runs over the AIF's samples (a file's
samples, a population AIF sampled finely, or the frames themselves for an ROI AIF) together with
the frame times, and the tissue curve is read at the frames only (:func:`acquisition` builds that
grid, one row per time point, with a column marking the frames).

Convolution (exact, O(n), any spacing): Cp is taken as piecewise linear between its samples
(0 before the first sample, constant after the last) and ``F(τ) = ∫ Cp(u) exp(-k(τ-u)) du`` is
computed by the recursion ``F(t_{j+1}) = e^{-kΔ} F(t_j) + Δ (Cp_j α(kΔ) + Cp_{j+1} β(kΔ))`` with
``α(x) = (1 - (1+x)e^{-x})/x²`` and ``β(x) = (x - 1 + e^{-x})/x²`` (series near x = 0), which is
exact for linear interpolation, together with its derivative in k (the exponential-integral scheme
of, e.g., Flouri et al., MRM 2016;76:998, and the recursive convolution of Gpufit's MRI models).
A delayed curve is evaluated between samples with the same formula over the partial segment, so
the delay derivative ``dF/dτ = Cp(τ) - k F(τ)`` is exact too.
"""

from __future__ import annotations

import numpy as np

from qmri.jit import njit

_SERIES_X = 0.05
_CACHE_RTOL = 1e-11


@njit(cache=True, inline="always")
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


@njit(cache=True)
def expconv(tm, c, sl, fr, k, d, wF, oF, wG, oG, wC, oC, wS, oS):
    """Accumulate the exponential convolution of a piecewise-linear input and its by-products.

    For every frame (row i with ``fr[i] != 0``; the o-th such row writes element o of the outputs),
    with ``τ = tm[i] - d`` (minutes), adds ``wF·F(τ)`` to ``oF[o]``, ``wG·∂F/∂k(τ)`` to ``oG[o]``,
    ``wC·Cp(τ)`` to ``oC[o]`` and ``wS·dCp/dτ(τ)`` to ``oS[o]`` (terms with zero weight are
    skipped; outputs may be the same array), where ``F(τ) = ∫_{tm[0]}^{τ} Cp(u) exp(-k (τ - u)) du``.

    Parameters
    ----------
    tm : ndarray (n,)
        Times of the grid in min (AIF samples and frames), strictly increasing.
    c : ndarray (n,)
        Input samples (mM); linear between samples, 0 before tm[0], c[-1] after tm[-1].
    sl : ndarray (n,)
        Slope of each segment, ``(c[j+1] - c[j]) / (tm[j+1] - tm[j])`` (mM/min), 0 for the last.
    fr : ndarray (n,)
        1 where the row is a frame (an output), 0 elsewhere.
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
    o = 0
    if d == 0.0:
        # frames are knots: plain recursion
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
            if fr[i] == 0.0:
                continue
            if wF != 0.0:
                oF[o] += wF * F
            if want_g:
                oG[o] += wG * G
            if wC != 0.0:
                oC[o] += wC * c[i]
            if wS != 0.0:
                oS[o] += wS * sl[i]
            o += 1
        return
    j = 0
    tj = t0
    Fj = 0.0
    Gj = 0.0
    sc = -1.0
    E2 = a2 = b2 = da2 = db2 = 0.0
    for i in range(n):
        if fr[i] == 0.0:
            continue
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
            oF[o] += wF * F
        if want_g:
            oG[o] += wG * G
        if wC != 0.0:
            oC[o] += wC * cp
        if wS != 0.0:
            oS[o] += wS * slope
        o += 1


def acquisition(t, cp, aif_times=None) -> np.ndarray:
    """The acquisition array of the DCE signal models, shape (5, n_points): the AIF on its own grid.

    Points (columns) are the union of the AIF's sample times and the frame times, in order (an
    AIF sample within 1e-6 s of a frame is that frame). Rows, each contiguous so that the
    recursion streams through them: time (s), plasma concentration Cp (mM; between AIF samples
    linear, which is exact for the piecewise-linear AIF), time (min), slope of Cp on the segment
    that starts at the point (mM/min, 0 for the last), and 1 where the point is a frame (the
    model's outputs, in frame order), 0 for AIF-only points. Without ``aif_times`` the AIF is
    given at the frames and every point is a frame.

    Parameters
    ----------
    t : array_like (n_frames,)
        Frame times in s, strictly increasing.
    cp : array_like
        Plasma AIF in mM: at ``aif_times`` when given, else at the frame times.
    aif_times : array_like, optional
        Sample times of the AIF in s, strictly increasing and covering the frames.
    """
    t = np.asarray(t, dtype=np.float64)
    cp = np.asarray(cp, dtype=np.float64)
    if aif_times is None:
        ts, c, fr = t, cp, np.ones_like(t)
    else:
        ta = np.asarray(aif_times, dtype=np.float64)
        j = np.clip(np.searchsorted(t, ta), 1, max(t.size - 1, 1))
        near = np.minimum(np.abs(ta - t[j - 1]), np.abs(ta - t[np.minimum(j, t.size - 1)]))
        keep = near > 1e-6
        ts = np.concatenate([t, ta[keep]])
        order = np.argsort(ts, kind="stable")
        ts = ts[order]
        c = np.concatenate([np.interp(t, ta, cp), cp[keep]])[order]
        fr = np.concatenate([np.ones(t.size), np.zeros(int(keep.sum()))])[order]
    tm = ts / 60.0
    sl = np.zeros_like(c)
    sl[:-1] = np.diff(c) / np.diff(tm)
    return np.ascontiguousarray(np.stack([ts, c, tm, sl, fr], axis=0))


def frame_count(acq) -> int:
    """Number of frames (measurements) of an acquisition array of :func:`acquisition`."""
    return int(np.count_nonzero(np.asarray(acq)[4]))


def expconv_torch(t, c, fr, k, d):
    """Torch twin of :func:`expconv`: ``F(τ)`` and ``Cp(τ)`` at the frames, for a batch.

    Parameters
    ----------
    t, c, fr : tensor (n,)
        Times of the grid (s), input samples (mM) and frame marks (1 for a frame), as the rows of
        :func:`acquisition`.
    k, d : tensor (N,)
        Rate constants (1/min) and delays (min).

    Returns
    -------
    F, cp : tensors (N, n_frames)
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
    tau = tm[fr != 0][None, :] - d[:, None]                 # (N, n_frames)
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
