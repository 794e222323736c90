"""Scalar maps of the diffusion and kurtosis tensors, per voxel in Numba.

From the eigen-decomposition of D (eigenvalues λ1 >= λ2 >= λ3): MD, AD = λ1, RD = (λ2+λ3)/2, FA
(Basser & Pierpaoli 1996); MK by the analytic formula of Tabesh et al., MRM 2011;65:823
(doi:10.1002/mrm.22655) with Carlson's elliptic integrals, AK = Ŵ1111 MD²/λ1² and RK by the
analytic radial formula (same paper), MKT = mean of the kurtosis tensor (Hansen et al., MRM
2013;69:1754, doi:10.1002/mrm.24743), KFA (Glenn et al., NMR Biomed 2015;28:448,
doi:10.1002/nbm.3271). The branches used where eigenvalues nearly coincide (relative difference
below 2.5%) and the eigenvalue floor follow dipy's ``dipy.reconst.dki``, so that the maps agree
with dipy's (``analytical=True``) to rounding.
"""

from __future__ import annotations

import numpy as np

from qmri.fitting.linalg import fit_quality
from qmri.jit import FASTMATH, njit, prange

#: Default kurtosis clipping of the scalar maps (dipy's ``DiffusionKurtosisFit`` defaults:
#: -3/7, the limit for water in spherical pores, Jensen 2005; and 10).
MIN_KURTOSIS = -3.0 / 7.0
MAX_KURTOSIS = 10.0
#: Scalar maps and their units, in the order of :func:`tensor_maps`.
MAP_UNITS = {"S0": "a.u.", "MD": "mm2/s", "AD": "mm2/s", "RD": "mm2/s", "FA": "", "MK": "", "AK": "",
             "RK": "", "MKT": "", "KFA": ""}


@njit(cache=True)
def _eigh3(A, w, V):
    """Eigen-decomposition of the symmetric 3×3 ``A`` by cyclic Jacobi; eigenvalues descending
    in ``w``, eigenvectors as the columns of ``V``. ``A`` is overwritten (no allocation per voxel)."""
    for i in range(3):
        for j in range(3):
            V[i, j] = 1.0 if i == j else 0.0
    for sweep in range(50):
        off = A[0, 1] ** 2 + A[0, 2] ** 2 + A[1, 2] ** 2
        diag = A[0, 0] ** 2 + A[1, 1] ** 2 + A[2, 2] ** 2
        if off <= 1e-32 * diag or off == 0.0:
            break
        for p in range(2):
            for q in range(p + 1, 3):
                if A[p, q] == 0.0:
                    continue
                theta = (A[q, q] - A[p, p]) / (2.0 * A[p, q])
                t = (1.0 if theta >= 0.0 else -1.0) / (abs(theta) + np.sqrt(theta * theta + 1.0))
                c = 1.0 / np.sqrt(t * t + 1.0)
                s = t * c
                for k in range(3):
                    akp = A[k, p]
                    akq = A[k, q]
                    A[k, p] = c * akp - s * akq
                    A[k, q] = s * akp + c * akq
                for k in range(3):
                    apk = A[p, k]
                    aqk = A[q, k]
                    A[p, k] = c * apk - s * aqk
                    A[q, k] = s * apk + c * aqk
                for k in range(3):
                    vkp = V[k, p]
                    vkq = V[k, q]
                    V[k, p] = c * vkp - s * vkq
                    V[k, q] = s * vkp + c * vkq
    for i in range(3):
        w[i] = A[i, i]
    # sort descending
    for i in range(3):
        m = i
        for j in range(i + 1, 3):
            if w[j] > w[m]:
                m = j
        if m != i:
            tmp = w[i]
            w[i] = w[m]
            w[m] = tmp
            for k in range(3):
                tmp = V[k, i]
                V[k, i] = V[k, m]
                V[k, m] = tmp


@njit(cache=True)
def kurtosis_polynomial(W, x, y, z):
    """Σ W_ijkl n_i n_j n_k n_l for the 15 elements ``W`` (dipy order) and n = (x, y, z)."""
    return (W[0] * x ** 4 + W[1] * y ** 4 + W[2] * z ** 4
            + 4.0 * (W[3] * x ** 3 * y + W[4] * x ** 3 * z + W[5] * x * y ** 3 + W[6] * y ** 3 * z
                     + W[7] * x * z ** 3 + W[8] * y * z ** 3)
            + 6.0 * (W[9] * x * x * y * y + W[10] * x * x * z * z + W[11] * y * y * z * z)
            + 12.0 * (W[12] * x * x * y * z + W[13] * x * y * y * z + W[14] * x * y * z * z))


@njit(cache=True)
def _w_rot(W, V, a, b):
    """Rotated element Ŵ_aabb in the eigenvector frame (columns a, b of V), by polarisation."""
    ux, uy, uz = V[0, a], V[1, a], V[2, a]
    if a == b:
        return kurtosis_polynomial(W, ux, uy, uz)
    vx, vy, vz = V[0, b], V[1, b], V[2, b]
    return (kurtosis_polynomial(W, ux + vx, uy + vy, uz + vz) + kurtosis_polynomial(W, ux - vx, uy - vy, uz - vz)
            - 2.0 * kurtosis_polynomial(W, ux, uy, uz) - 2.0 * kurtosis_polynomial(W, vx, vy, vz)) / 12.0


@njit(cache=True)
def _duplicate(x, y, z):
    """Carlson's duplication step: (x, y, z) → (x + λ)/4 ..., with λ = √x√y + √x√z + √y√z."""
    sx, sy, sz = np.sqrt(x), np.sqrt(y), np.sqrt(z)
    lam = sx * (sy + sz) + sy * sz
    return 0.25 * (x + lam), 0.25 * (y + lam), 0.25 * (z + lam), lam, sz


@njit(cache=True)
def carlson_rf(x, y, z):
    """Carlson's symmetric elliptic integral R_F (duplication; Carlson 1995, Numer. Algorithms 10:13)."""
    return carlson_rf_rd(x, y, z)[0]


@njit(cache=True)
def carlson_rd(x, y, z):
    """Carlson's symmetric elliptic integral R_D (duplication; Carlson 1995)."""
    return carlson_rf_rd(x, y, z)[1]


@njit(cache=True)
def _rf_series(x, y, z):
    """R_F from its series once the arguments are close (Carlson 1995)."""
    A = (x + y + z) / 3.0
    X = 1.0 - x / A
    Y = 1.0 - y / A
    Z = -X - Y
    E2 = X * Y - Z * Z
    E3 = X * Y * Z
    return (1.0 - E2 / 10.0 + E3 / 14.0 + E2 * E2 / 24.0 - 3.0 * E2 * E3 / 44.0) / np.sqrt(A)


@njit(cache=True)
def _rd_series(x, y, z):
    """The series part of R_D once the arguments are close (Carlson 1995), to be scaled
    by the duplication factor and added to the sum of the steps."""
    A = (x + y + 3.0 * z) / 5.0
    X = (A - x) / A
    Y = (A - y) / A
    Z = -(X + Y) / 3.0
    E2 = X * Y - 6.0 * Z * Z
    E3 = (3.0 * X * Y - 8.0 * Z * Z) * Z
    E4 = 3.0 * (X * Y - Z * Z) * Z * Z
    E5 = X * Y * Z * Z * Z
    series = (1.0 - 3.0 * E2 / 14.0 + E3 / 6.0 + 9.0 * E2 * E2 / 88.0 - 3.0 * E4 / 22.0
              - 9.0 * E2 * E3 / 52.0 + 3.0 * E5 / 26.0)
    return series / (A * np.sqrt(A))


@njit(cache=True)
def carlson_rf_rd(x, y, z):
    """``(R_F(x, y, z), R_D(x, y, z))`` in one duplication sequence.

    Both integrals are invariant under the same duplication step (Carlson 1995), so one sequence
    of steps (three square roots each) serves both. It stops when the arguments agree to 1e-4
    relative for both series, which leaves a truncation error far below double rounding (more
    steps than one integral alone needs only make its remainder smaller). :func:`carlson_rf` and
    :func:`carlson_rd` are its two halves.
    """
    s = 0.0
    fac = 1.0
    for _ in range(100):
        af = (x + y + z) / 3.0
        ad = (x + y + 3.0 * z) / 5.0
        if max(abs(1.0 - x / af), abs(1.0 - y / af), abs(1.0 - z / af), abs(1.0 - x / ad), abs(1.0 - y / ad),
               abs(1.0 - z / ad)) < 1e-4:
            break
        z_old = z
        x, y, z, lam, sz = _duplicate(x, y, z)
        s += fac / (sz * (z_old + lam))
        fac *= 0.25
    return _rf_series(x, y, z), 3.0 * s + fac * _rd_series(x, y, z)


_ER = 2.5e-2  # eigenvalues closer than 2.5% are treated as equal (dipy, Tabesh 2011 limits)


@njit(cache=True)
def _f2(a, b, c):
    if abs(b - c) < b * _ER:
        if abs(a - b) < b * _ER:
            return 6.0 / 15.0
        L1 = a
        L3 = 0.5 * (b + c)
        x = 1.0 - L1 / L3
        if x > 0.0:
            alpha = np.arctanh(np.sqrt(x)) / np.sqrt(x)
        else:
            alpha = np.arctan(np.sqrt(-x)) / np.sqrt(-x)
        return (6.0 * (L1 + 2.0 * L3) ** 2 / (144.0 * L3 * L3 * (L1 - L3) ** 2)
                * (L3 * (L1 + 2.0 * L3) + L1 * (L1 - 4.0 * L3) * alpha))
    rf, rd = carlson_rf_rd(a / b, a / c, 1.0)
    return _f2_general(a, b, c, rf, rd)


@njit(cache=True)
def _f2_general(a, b, c, rf, rd):
    sbc = np.sqrt(b * c)
    return ((a + b + c) ** 2 / (3.0 * (b - c) ** 2)
            * ((b + c) / sbc * rf + (2.0 * a - b - c) / (3.0 * sbc) * rd - 2.0))


@njit(cache=True)
def _f1(a, b, c):
    ab = abs(a - b) < a * _ER
    ac = abs(a - c) < a * _ER
    if ab and ac:
        return 0.2
    if ab:
        L = 0.5 * (a + b)
        return 0.5 * _f2(c, L, L)
    if ac:
        L = 0.5 * (a + c)
        return 0.5 * _f2(b, L, L)
    rf, rd = carlson_rf_rd(a / b, a / c, 1.0)
    return _f1_general(a, b, c, rf, rd)


@njit(cache=True)
def _f1_general(a, b, c, rf, rd):
    sbc = np.sqrt(b * c)
    return ((a + b + c) ** 2 / (18.0 * (a - b) * (a - c))
            * (sbc / a * rf + (3.0 * a * a - a * b - a * c - b * c) / (3.0 * a * sbc) * rd - 1.0))


@njit(cache=True)
def _f1_f2(a, b, c):
    """``(F1(a, b, c), F2(a, b, c))`` of Tabesh 2011: one pair of Carlson integrals serves both
    when no two eigenvalues coincide (the general branches of :func:`_f1` and :func:`_f2`)."""
    if abs(a - b) < a * _ER or abs(a - c) < a * _ER or abs(b - c) < b * _ER:
        return _f1(a, b, c), _f2(a, b, c)
    rf, rd = carlson_rf_rd(a / b, a / c, 1.0)
    return _f1_general(a, b, c, rf, rd), _f2_general(a, b, c, rf, rd)


@njit(cache=True)
def _g1(a, b, c):
    if abs(b - c) >= b * _ER:
        return (a + b + c) ** 2 / (18.0 * b * (b - c) ** 2) * (2.0 * b + (c * c - 3.0 * b * c) / np.sqrt(b * c))
    return (a + 2.0 * b) ** 2 / (24.0 * b * b)


@njit(cache=True)
def _g2(a, b, c):
    if abs(b - c) >= b * _ER:
        return (a + b + c) ** 2 / (3.0 * (b - c) ** 2) * ((b + c) / np.sqrt(b * c) - 2.0)
    return (a + 2.0 * b) ** 2 / (12.0 * b * b)


@njit(cache=True)
def _clip(v, lo, hi):
    return min(max(v, lo), hi)


@njit(cache=True)
def tensor_maps_voxel(beta, min_diff, kmin, kmax, D, w, V, W, out):
    """Scalar maps of one voxel from β (22,) in µm²/ms units.

    ``out`` gets (S0, MD, AD, RD, FA, MK, AK, RK, MKT, KFA) with diffusivities in µm²/ms.
    Eigenvalues are floored at ``min_diff``; MK, AK, RK are 0 where an eigenvalue is not above
    2e-4 µm²/ms (2e-7 mm²/s), as in dipy; kurtosis maps are clipped to [kmin, kmax].
    """
    D[0, 0] = beta[0]
    D[0, 1] = beta[1]
    D[1, 0] = beta[1]
    D[1, 1] = beta[2]
    D[0, 2] = beta[3]
    D[2, 0] = beta[3]
    D[1, 2] = beta[4]
    D[2, 1] = beta[4]
    D[2, 2] = beta[5]
    _eigh3(D, w, V)
    for i in range(3):
        if w[i] < min_diff:
            w[i] = min_diff
    l1, l2, l3 = w[0], w[1], w[2]
    md = (l1 + l2 + l3) / 3.0
    md2 = md * md
    for k in range(15):
        W[k] = beta[6 + k] / md2 if md2 != 0.0 else 0.0
    out[0] = np.exp(beta[21])
    out[1] = md
    out[2] = l1
    out[3] = 0.5 * (l2 + l3)
    ss = l1 * l1 + l2 * l2 + l3 * l3
    out[4] = np.sqrt(0.5 * ((l1 - l2) ** 2 + (l2 - l3) ** 2 + (l3 - l1) ** 2) / ss) if ss > 0.0 else 0.0
    if l1 > 2e-4 and l2 > 2e-4 and l3 > 2e-4:
        w1111 = _w_rot(W, V, 0, 0)
        w2222 = _w_rot(W, V, 1, 1)
        w3333 = _w_rot(W, V, 2, 2)
        w1122 = _w_rot(W, V, 0, 1)
        w1133 = _w_rot(W, V, 0, 2)
        w2233 = _w_rot(W, V, 1, 2)
        f1a, f2a = _f1_f2(l1, l2, l3)
        f1b, f2b = _f1_f2(l2, l1, l3)
        f1c, f2c = _f1_f2(l3, l2, l1)
        mk = f1a * w1111 + f1b * w2222 + f1c * w3333 + f2a * w2233 + f2b * w1133 + f2c * w1122
        ak = w1111 * md2 / (l1 * l1)
        rk = _g1(l1, l2, l3) * w2222 + _g1(l1, l3, l2) * w3333 + _g2(l1, l2, l3) * w2233
        out[5] = _clip(mk, kmin, kmax)
        out[6] = _clip(ak, kmin, kmax)
        out[7] = _clip(rk, kmin, kmax)
    else:
        out[5] = 0.0
        out[6] = 0.0
        out[7] = 0.0
    wm = (W[0] + W[1] + W[2] + 2.0 * (W[9] + W[10] + W[11])) / 5.0
    out[8] = _clip(wm, kmin, kmax)
    A = ((W[0] - wm) ** 2 + (W[1] - wm) ** 2 + (W[2] - wm) ** 2
         + 4.0 * (W[3] ** 2 + W[4] ** 2 + W[5] ** 2 + W[6] ** 2 + W[7] ** 2 + W[8] ** 2)
         + 6.0 * ((W[9] - wm / 3.0) ** 2 + (W[10] - wm / 3.0) ** 2 + (W[11] - wm / 3.0) ** 2)
         + 12.0 * (W[12] ** 2 + W[13] ** 2 + W[14] ** 2))
    B = (W[0] ** 2 + W[1] ** 2 + W[2] ** 2
         + 4.0 * (W[3] ** 2 + W[4] ** 2 + W[5] ** 2 + W[6] ** 2 + W[7] ** 2 + W[8] ** 2)
         + 6.0 * (W[9] ** 2 + W[10] ** 2 + W[11] ** 2)
         + 12.0 * (W[12] ** 2 + W[13] ** 2 + W[14] ** 2))
    out[9] = np.sqrt(A / B) if (B > 0.0 and wm > 1e-8) else 0.0


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _maps_batch(Bt, X, Y, min_diff, kmin, kmax, out, rmse, r2):
    n = Bt.shape[0]
    m, p = X.shape
    nblk = (n + 255) // 256
    for blk in prange(nblk):
        D = np.empty((3, 3))
        w = np.empty(3)
        V = np.empty((3, 3))
        W = np.empty(15)
        o = np.empty(10)
        f = np.empty(m)
        for v in range(blk * 256, min(n, (blk + 1) * 256)):
            beta = Bt[v]
            if not np.isfinite(beta[0]):
                for k in range(10):
                    out[v, k] = np.nan
                rmse[v] = np.nan
                r2[v] = np.nan
                continue
            tensor_maps_voxel(beta, min_diff, kmin, kmax, D, w, V, W, o)
            for k in range(10):
                out[v, k] = o[k]
            for k in range(1, 4):
                out[v, k] *= 1e-3  # µm²/ms -> mm²/s
            for i in range(m):
                s = 0.0
                for a in range(p):
                    s += X[i, a] * beta[a]
                f[i] = np.exp(s)
            rmse[v], r2[v] = fit_quality(Y[v], f)


def tensor_maps(beta, *, X=None, signals=None, min_diffusivity=0.0, min_kurtosis=MIN_KURTOSIS,
                max_kurtosis=MAX_KURTOSIS):
    """Scalar maps from DKI coefficients.

    Parameters
    ----------
    beta : ndarray, shape (n, 22)
        Coefficients as in :func:`design_matrix` (µm²/ms, (µm²/ms)², log S0); NaN rows = failed.
    X, signals : ndarray, optional
        Design matrix (m, 22) and signals (n, m); when given, ``rmse`` and ``r2`` of the fit.
    min_diffusivity : float
        Eigenvalue floor in mm²/s.
    min_kurtosis, max_kurtosis : float
        Clipping of MK, AK, RK, MKT.

    Returns
    -------
    dict of str to ndarray (n,)
        ``S0, MD, AD, RD, FA, MK, AK, RK, MKT, KFA`` (MD, AD, RD in mm²/s), plus ``rmse``, ``r2``.
    """
    Bt = np.ascontiguousarray(beta, dtype=np.float64)
    n = Bt.shape[0]
    if X is None:
        X = np.zeros((1, 22))
        Y = np.zeros((n, 1))
    else:
        Y = np.ascontiguousarray(signals, dtype=np.float64)
        X = np.ascontiguousarray(X, dtype=np.float64)
    out = np.empty((n, 10))
    rmse = np.empty(n)
    r2 = np.empty(n)
    if n:
        _maps_batch(Bt, X, Y, float(min_diffusivity) * 1e3, float(min_kurtosis), float(max_kurtosis), out, rmse, r2)
    res = {k: out[:, j] for j, k in enumerate(MAP_UNITS)}
    res["rmse"], res["r2"] = rmse, r2
    return res
