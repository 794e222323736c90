"""Linear starting values of the DCE models: least squares on the integrated model equations.

Each model declares its linear form (:class:`qmri.models.dce.pk.LinearForm`: which of the voxel's
columns -∫C, -∫∫C and which shared columns Cp, ∫Cp, ∫∫Cp it uses, and how its coefficients give
the parameters): Tofts and extended Tofts after Murase, MRM 2004;51:858; Patlak its own; 2CXM and
2CUM the twice-integrated forms of Flouri et al., MRM 2016;76:998; a model without one (AATH)
starts from another's (:func:`qmri.models.dce.pk.linear_form`). With a fitted delay the estimate is
evaluated on a grid of delays (1 s by default) and the best delay kept. The estimate is fast and
biased with noise: it starts the least-squares fit (``lsq``) and is the ``linear`` method.
"""

from __future__ import annotations

import numpy as np

from qmri.fitting.linalg import cholesky_solve
from qmri.jit import njit, prange
from qmri.models.dce.convolution import expconv

_LBLOCK = 64


@njit(cache=True, inline="always")
def _lcol(a, i, nv, I1, I2, X, dd):
    if a < nv:
        return I1[i] if a == 0 else I2[i]
    return X[dd, i, a - nv]


@njit(parallel=True, cache=True)
def _linear_batch(tm, Y, X, nv, coef, best):
    """Least squares of C on [∫C, ∫∫C][:nv] + X[d] for every delay d; keep the best delay."""
    n, m = Y.shape
    nd = X.shape[0]
    q = nv + X.shape[2]
    nblocks = (n + _LBLOCK - 1) // _LBLOCK
    for blk in prange(nblocks):
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


def shared_columns(form, acq: np.ndarray, delays: np.ndarray) -> np.ndarray:
    """The voxel-independent columns of the linear form ``form`` (Cp, ∫Cp, ∫∫Cp as it needs) at the
    frames, for each delay (s): shape (n_delays, n_frames, n_columns). Cp and ∫Cp are exact for
    the AIF on its own grid (``acq`` of :func:`qmri.models.dce.convolution.acquisition`); ∫∫Cp
    is the trapezoidal integral of ∫Cp over the frames."""
    cols = form.shared_columns
    fr = acq[4]
    tf = acq[2, fr != 0]
    m = tf.size
    X = np.zeros((delays.size, m, len(cols)))
    for di, d in enumerate(delays):
        F0 = np.zeros(m)
        cpd = np.zeros(m)
        expconv(acq[2], acq[1], acq[3], fr, 0.0, d / 60.0, 1.0, F0, 0.0, F0, 1.0, cpd, 0.0, F0)
        base = [cpd, F0, _cumtrapz(tf, F0)]
        for a, col in enumerate(cols):
            X[di, :, a] = base[col]
    return X


def linear_coefficients(form, tm: np.ndarray, Y: np.ndarray, X: np.ndarray):
    """Least-squares coefficients of the linear form ``form`` for concentrations ``Y`` (n, m) at times ``tm``
    (min), with the shared columns ``X`` of :func:`shared_columns`.

    Returns ``coef`` (n, n_coefficients; NaN where unsolvable) and the index of the best delay
    (n,; -1 where unsolvable).
    """
    nv, cols = form.voxel_columns, form.shared_columns
    n = Y.shape[0]
    coef = np.empty((n, nv + len(cols)))
    best = np.empty(n, dtype=np.int64)
    _linear_batch(tm, np.ascontiguousarray(Y), X, nv, coef, best)
    return coef, best
