"""Small dense linear algebra for per-voxel kernels: Cholesky factor and solve, fit quality.

Used inside Numba kernels on work arrays allocated once per block of voxels (no allocation here).
"""

from __future__ import annotations

import numpy as np

from qmri.jit import FASTMATH, njit


@njit(cache=True, fastmath=FASTMATH)
def cholesky_factor(A, L, n):
    """Lower Cholesky factor ``L`` of the symmetric positive-definite ``A`` (n×n); False if not SPD."""
    for j in range(n):
        s = A[j, j]
        for k in range(j):
            s -= L[j, k] * L[j, k]
        if not (s > 0.0) or not np.isfinite(s):
            return False
        d = np.sqrt(s)
        L[j, j] = d
        inv = 1.0 / d  # one division per column (a third of the time of a 22x22 factor otherwise)
        for i in range(j + 1, n):
            s = A[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            L[i, j] = s * inv
    return True


@njit(cache=True, fastmath=FASTMATH)
def cholesky_solve(A, b, x, L, n):
    """Solve ``A x = b`` for a symmetric positive-definite ``A`` (n×n) by Cholesky; False if not SPD."""
    if not cholesky_factor(A, L, n):
        return False
    for i in range(n):
        s = b[i]
        for k in range(i):
            s -= L[i, k] * x[k]
        x[i] = s / L[i, i]
    for i in range(n - 1, -1, -1):
        s = x[i]
        for k in range(i + 1, n):
            s -= L[k, i] * x[k]
        x[i] = s / L[i, i]
    return True


@njit(cache=True)
def quality_from_ssr(y, ssr):
    """(rmse, r2) of a fit to the measured ``y`` (m,) with residual sum of squares ``ssr``."""
    m = y.shape[0]
    mean = 0.0
    for i in range(m):
        mean += y[i]
    mean /= m
    sst = 0.0
    for i in range(m):
        sst += (y[i] - mean) ** 2
    return np.sqrt(ssr / m), (1.0 - ssr / sst if sst > 0.0 else np.nan)


@njit(cache=True)
def fit_quality(y, f):
    """(rmse, r2) of the fitted signal ``f`` against the measured ``y`` (both (m,))."""
    ssr = 0.0
    for i in range(y.shape[0]):
        ssr += (f[i] - y[i]) ** 2
    return quality_from_ssr(y, ssr)
