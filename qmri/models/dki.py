"""Diffusion kurtosis imaging (DKI): full-tensor and trace (powder / body) kurtosis.

Full tensor (Jensen et al., MRM 2005;53:1432, doi:10.1002/mrm.20508; Jensen & Helpern, NMR Biomed
2010;23:698, doi:10.1002/nbm.1518)::

    log S(n, b) = log S0 − b Σ n_i n_j D_ij + b²/6 · MD² Σ n_i n_j n_k n_l W_ijkl

with 6 diffusion-tensor elements D, 15 kurtosis-tensor elements W and S0. The apparent kurtosis
along ``n`` is ``K(n) = MD² W(n) / D(n)²``. The acquisition needs at least 3 distinct b-values
(b=0 included) and 15 non-collinear directions (Jensen & Helpern 2010).

Internally b is in ms/µm² (b/1000) and diffusivities in µm²/ms (= 1e-3 mm²/s), which keeps the
least-squares problems well conditioned; outputs are in mm²/s. The linear model is solved on
``log S`` with the coefficient vector ``β = (Dxx, Dxy, Dyy, Dxz, Dyz, Dzz, MD²W × 15, log S0)``
(tensor element order as dipy's ``lower_triangular`` and ``dki_design_matrix``).

Scalar maps (per voxel, from the eigen-decomposition of D, eigenvalues λ1 >= λ2 >= λ3):
MD, AD = λ1, RD = (λ2+λ3)/2, FA (Basser & Pierpaoli 1996); MK by the analytic formula of Tabesh
et al., MRM 2011;65:823 (doi:10.1002/mrm.22655) with Carlson's elliptic integrals, AK = Ŵ1111
MD²/λ1² and RK by the analytic radial formula (same paper), MKT = mean of the kurtosis tensor
(Hansen et al., MRM 2013;69:1754, doi:10.1002/mrm.24743), KFA (Glenn et al., NMR Biomed 2015;
28:448, doi:10.1002/nbm.3271). The branches used where eigenvalues nearly coincide (relative
difference below 2.5%) and the eigenvalue floor follow dipy's ``dipy.reconst.dki``, so that
the maps agree with dipy's (``analytical=True``) to rounding.

Trace / powder DKI (body imaging; Rosenkrantz et al., JMRI 2015;42:1190, doi:10.1002/jmri.24985)::

    S(b) = S0 exp(−b D + b² D² K / 6)

fitted per voxel by bounded Levenberg–Marquardt with 0 < D <= 0.005 mm²/s and 0 <= K <= 3.
"""

from __future__ import annotations

import dataclasses

import numba as nb
import numpy as np

from qmri.errors import QMRIInputError
from qmri.fitting.linear import _FAST, MIN_SIGNAL, solve_loglinear
from qmri.fitting.lm import STATUS_CONVERGED, STATUS_FAILED, LMOptions, fit_lm, fit_quality
from qmri.fitting.result import FitResult
from qmri.models.base import Model, Parameter, SignalModel, normalise_to_lowest_b, register, resolve_bounds

#: b-values at or below this (s/mm²) are treated as b=0 (their b-vectors are ignored); dipy's default.
B0_THRESHOLD = 50.0
#: b-values are grouped into shells after rounding to a multiple of this (s/mm²).
SHELL_ROUNDING = 50.0
#: Default kurtosis clipping of the scalar maps (dipy's ``DiffusionKurtosisFit`` defaults:
#: -3/7, the limit for water in spherical pores, Jensen 2005; and 10).
MIN_KURTOSIS = -3.0 / 7.0
MAX_KURTOSIS = 10.0
#: Full-tensor output maps and their units.
FULL_OUTPUTS = {"S0": "a.u.", "MD": "mm2/s", "AD": "mm2/s", "RD": "mm2/s", "FA": "", "MK": "", "AK": "",
                "RK": "", "MKT": "", "KFA": ""}
_OUT_NAMES = list(FULL_OUTPUTS)
#: Names of the 15 kurtosis-tensor elements, in dipy's order.
KT_NAMES = ("xxxx", "yyyy", "zzzz", "xxxy", "xxxz", "xyyy", "yyyz", "xzzz", "yzzz", "xxyy", "xxzz", "yyzz",
            "xxyz", "xyyz", "xyzz")
DT_NAMES = ("xx", "xy", "yy", "xz", "yz", "zz")
#: Multiplicity of each of the 15 elements in the full contraction Σ W_ijkl n_i n_j n_k n_l.
_KT_MULT = np.array([1, 1, 1, 4, 4, 4, 4, 4, 4, 6, 6, 6, 12, 12, 12], dtype=np.float64)
#: Fixed constraint directions of the ``cwls`` fit (on a half sphere; antipodes are equivalent);
#: the fit then adds, per voxel, the directions where a constraint is most violated.
N_CONSTRAINT_DIRECTIONS = 300
#: Signal-monotonicity constant of the ``cwls`` upper bound K(n) <= C / (b_max D(n)) (Tabesh 2011).
KURTOSIS_MONOTONIC_C = 3.0


# ---------------------------------------------------------------------------------------------
# Design matrix and direction polynomials (b in ms/µm²)
# ---------------------------------------------------------------------------------------------
def _dt_row(n):
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    return np.stack([x * x, 2 * x * y, y * y, 2 * x * z, 2 * y * z, z * z], axis=-1)


def _kt_row(n):
    """Monomials of Σ W_ijkl n_i n_j n_k n_l per dipy element, multiplicities included."""
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    mono = np.stack([x ** 4, y ** 4, z ** 4, x ** 3 * y, x ** 3 * z, x * y ** 3, y ** 3 * z, x * z ** 3,
                     y * z ** 3, x * x * y * y, x * x * z * z, y * y * z * z, x * x * y * z, x * y * y * z,
                     x * y * z * z], axis=-1)
    return mono * _KT_MULT


def design_matrix(bvals, bvecs) -> np.ndarray:
    """DKI design matrix in ms/µm², shape (n, 22): ``log S = X β``.

    Parameters
    ----------
    bvals : array_like, shape (n,)
        b-values in s/mm².
    bvecs : array_like, shape (n, 3)
        Unit gradient directions (ignored where b <= :data:`B0_THRESHOLD`).

    Returns
    -------
    ndarray, shape (n, 22)
        Columns ``-b' D-monomials`` (6), ``b'²/6 · W-monomials`` (15), ``1`` (log S0), with
        ``b' = b / 1000``.
    """
    b = np.asarray(bvals, dtype=np.float64) / 1000.0
    g = np.asarray(bvecs, dtype=np.float64)
    return np.concatenate([-b[:, None] * _dt_row(g), (b * b / 6.0)[:, None] * _kt_row(g),
                           np.ones((b.size, 1))], axis=1)


def hemisphere(n: int) -> np.ndarray:
    """``n`` near-uniform unit vectors on the half sphere z >= 0 (Fibonacci lattice), (n, 3)."""
    k = np.arange(n) + 0.5
    z = 1.0 - k / n
    r = np.sqrt(1.0 - z * z)
    phi = np.pi * (3.0 - np.sqrt(5.0)) * k
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def constraint_matrix(b_max: float, n_dirs: int | None = None, c: float = KURTOSIS_MONOTONIC_C):
    """Linear constraints ``C β >= 0`` of the ``cwls`` fit (Tabesh et al. 2011, CLLS):

    along every one of ``n_dirs`` directions, D(n) >= 0, K(n) >= 0 and K(n) <= c / (b_max D(n))
    (the signal decreases monotonically up to ``b_max``), all linear in β since
    ``K(n) D(n)² = MD² W(n)``. ``b_max`` in s/mm².

    Returns
    -------
    C : ndarray, shape (3 n_dirs, 22)
    d : ndarray, shape (3 n_dirs,)
    """
    n_dirs = N_CONSTRAINT_DIRECTIONS if n_dirs is None else int(n_dirs)
    n = hemisphere(n_dirs)
    dt, kt = _dt_row(n), _kt_row(n)
    z6, z15, z1 = np.zeros((n_dirs, 6)), np.zeros((n_dirs, 15)), np.zeros((n_dirs, 1))
    bp = b_max / 1000.0
    C = np.concatenate([np.concatenate([dt, z15, z1], axis=1),
                        np.concatenate([z6, kt, z1], axis=1),
                        np.concatenate([(c / bp) * dt, -kt, z1], axis=1)], axis=0)
    return np.ascontiguousarray(C), np.zeros(3 * n_dirs)


@nb.njit(cache=True)
def _dir_value(beta, kind, cup, x, y, z):
    dn = (beta[0] * x * x + 2.0 * beta[1] * x * y + beta[2] * y * y + 2.0 * beta[3] * x * z
          + 2.0 * beta[4] * y * z + beta[5] * z * z)
    if kind == 0:
        return dn
    qn = _wpoly(beta[6:21], x, y, z)
    if kind == 1:
        return qn
    return cup * dn - qn


@nb.njit(cache=True)
def _dir_at(n0, t1, t2, a, b, out):
    x = n0[0] + a * t1[0] + b * t2[0]
    y = n0[1] + a * t1[1] + b * t2[1]
    z = n0[2] + a * t1[2] + b * t2[2]
    r = np.sqrt(x * x + y * y + z * z)
    out[0] = x / r
    out[1] = y / r
    out[2] = z / r


_N_STARTS = 4


@nb.njit(parallel=True, cache=True)
def _sphere_minima(Bt, dtn, ktn, nodes, cup, mins, argdirs):
    """Per voxel, for D(n) and K(n)D(n)²: the minimum over the sphere, found by damped Newton
    steps in the tangent plane (finite-difference derivatives of the quadratic / quartic) from
    the lowest nodes at least ~35° apart; ``mins[:, 2]`` (the upper bound) is left at 0."""
    n = Bt.shape[0]
    nn = nodes.shape[0]
    for v in nb.prange(n):
        beta = Bt[v]
        t1 = np.empty(3)
        t2 = np.empty(3)
        cur = np.empty(3)
        tr = np.empty(3)
        if not np.isfinite(beta[0]):
            for k in range(3):
                mins[v, k] = 0.0
            continue
        vals = np.empty(nn)
        mins[v, 2] = 0.0  # the upper bound is imposed on the fixed directions only
        for kind in range(2):
            for j in range(nn):
                dv = 0.0
                for a in range(6):
                    dv += dtn[j, a] * beta[a]
                if kind == 0:
                    vals[j] = dv
                else:
                    qv = 0.0
                    for a in range(15):
                        qv += ktn[j, a] * beta[6 + a]
                    vals[j] = qv if kind == 1 else cup * dv - qv
            order = np.argsort(vals)
            # Newton from up to _N_STARTS low nodes at least ~35 degrees apart (several local minima)
            starts = np.empty(_N_STARTS, dtype=np.int64)
            ns = 0
            for oj in range(nn):
                j = order[oj]
                far = True
                for t in range(ns):
                    c = abs(nodes[j, 0] * nodes[starts[t], 0] + nodes[j, 1] * nodes[starts[t], 1]
                            + nodes[j, 2] * nodes[starts[t], 2])
                    if c > 0.82:
                        far = False
                        break
                if far:
                    starts[ns] = j
                    ns += 1
                    if ns == _N_STARTS:
                        break
            fbest = np.inf
            for si in range(ns):
                best = starts[si]
                bv = vals[best]
                for a in range(3):
                    cur[a] = nodes[best, a]
                f0 = bv
                h = 1e-4
                for it in range(30):
                    # tangent basis at cur
                    if abs(cur[0]) < 0.9:  # t1 = cur × e_x
                        t1[0] = 0.0
                        t1[1] = cur[2]
                        t1[2] = -cur[1]
                    else:  # t1 = cur × e_y
                        t1[0] = -cur[2]
                        t1[1] = 0.0
                        t1[2] = cur[0]
                    r = np.sqrt(t1[0] ** 2 + t1[1] ** 2 + t1[2] ** 2)
                    for a in range(3):
                        t1[a] /= r
                    t2[0] = cur[1] * t1[2] - cur[2] * t1[1]
                    t2[1] = cur[2] * t1[0] - cur[0] * t1[2]
                    t2[2] = cur[0] * t1[1] - cur[1] * t1[0]
                    _dir_at(cur, t1, t2, h, 0.0, tr)
                    fpa = _dir_value(beta, kind, cup, tr[0], tr[1], tr[2])
                    _dir_at(cur, t1, t2, -h, 0.0, tr)
                    fma = _dir_value(beta, kind, cup, tr[0], tr[1], tr[2])
                    _dir_at(cur, t1, t2, 0.0, h, tr)
                    fpb = _dir_value(beta, kind, cup, tr[0], tr[1], tr[2])
                    _dir_at(cur, t1, t2, 0.0, -h, tr)
                    fmb = _dir_value(beta, kind, cup, tr[0], tr[1], tr[2])
                    _dir_at(cur, t1, t2, h, h, tr)
                    fpp = _dir_value(beta, kind, cup, tr[0], tr[1], tr[2])
                    _dir_at(cur, t1, t2, -h, -h, tr)
                    fmm = _dir_value(beta, kind, cup, tr[0], tr[1], tr[2])
                    ga = (fpa - fma) / (2 * h)
                    gb = (fpb - fmb) / (2 * h)
                    haa = (fpa - 2 * f0 + fma) / (h * h)
                    hbb = (fpb - 2 * f0 + fmb) / (h * h)
                    hab = (fpp - fpa - fpb + 2 * f0 - fma - fmb + fmm) / (2 * h * h)
                    det = haa * hbb - hab * hab
                    if haa > 0 and det > 0:
                        sa = -(hbb * ga - hab * gb) / det
                        sb = -(haa * gb - hab * ga) / det
                    else:
                        sa = -ga
                        sb = -gb
                    step = np.sqrt(sa * sa + sb * sb)
                    if step > 0.2:
                        sa *= 0.2 / step
                        sb *= 0.2 / step
                    moved = False
                    for _ in range(12):
                        _dir_at(cur, t1, t2, sa, sb, tr)
                        ft = _dir_value(beta, kind, cup, tr[0], tr[1], tr[2])
                        if ft < f0:
                            for a in range(3):
                                cur[a] = tr[a]
                            f0 = ft
                            moved = True
                            break
                        sa *= 0.5
                        sb *= 0.5
                    if not moved or step < 1e-10:
                        break
                if f0 < fbest:
                    fbest = f0
                    for a in range(3):
                        argdirs[v, kind, a] = cur[a]
            mins[v, kind] = fbest


def _violation_rows(argd, spread=0.03):
    """Constraint rows at the worst directions ``argd`` (k, 2 kinds, 3) and at 4 neighbours
    ``spread`` rad away: D(n) >= 0 (kind 0) and MD²W(n) >= 0 (kind 1); returns (k, 10, 22).
    The neighbours stop the minimum from sliding just past a single cut."""
    k = argd.shape[0]
    u = argd[:, :2].reshape(-1, 3)
    a = np.where(np.abs(u[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    t1 = np.cross(u, a)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(u, t1)
    dirs = np.stack([u, u + spread * t1, u - spread * t1, u + spread * t2, u - spread * t2], axis=1)
    dirs /= np.linalg.norm(dirs, axis=2, keepdims=True)
    dirs = dirs.reshape(k, 2, 5, 3)
    rows = np.zeros((k, 2, 5, 22))
    rows[:, 0, :, :6] = _dt_row(dirs[:, 0])
    rows[:, 1, :, 6:21] = _kt_row(dirs[:, 1])
    return rows.reshape(k, 10, 22)


def constrained_fit(X, Y, b_max, *, min_signal=MIN_SIGNAL, n_dirs=None, c=KURTOSIS_MONOTONIC_C,
                    tol=1e-7, max_refine=6, margin=1e-6):
    """The ``cwls`` fit: WLS with D(n) >= 0, 0 <= K(n) <= c/(b_max D(n)) for *every* direction.

    The constraints are first imposed on :data:`N_CONSTRAINT_DIRECTIONS` fixed directions
    (exact solution by :func:`qmri.fitting.linear.solve_loglinear`); then, per voxel, the minimum
    of D(n) and of K(n)D(n)² over the whole sphere is located (Newton steps from the best
    direction) and, where it is below ``-tol``, that direction (with 4 neighbours) is added to
    the voxel's constraints, with a margin ``margin`` (µm²/ms for D, µm⁴/ms² for MD²W: a
    kurtosis bias below 1e-5), and the voxel is solved again (at most ``max_refine`` times). The
    upper bound is imposed on the fixed directions only (between them it can be exceeded
    slightly; the positivity constraints are the ones that matter for plausibility).

    Returns
    -------
    beta : ndarray (n, 22); ok : ndarray of bool (n,); rounds : ndarray of int32 (n,)
    """
    C, d = constraint_matrix(b_max, n_dirs, c)
    beta, ok, rounds = solve_loglinear(X, Y, method="wls", n_iter=1, min_signal=min_signal, constraints=(C, d))
    n_dirs = C.shape[0] // 3
    nodes = np.ascontiguousarray(hemisphere(n_dirs))
    dtn, ktn = np.ascontiguousarray(_dt_row(nodes)), np.ascontiguousarray(_kt_row(nodes))
    cup = c / (b_max / 1000.0)
    todo = np.arange(Y.shape[0])
    Cx, dx = np.zeros((0, 0, 22)), np.zeros((0, 0))
    nx = np.zeros(0, dtype=np.int64)
    for _ in range(max_refine):
        if todo.size == 0:
            break
        mins = np.zeros((todo.size, 3))
        argd = np.zeros((todo.size, 3, 3))
        _sphere_minima(np.ascontiguousarray(beta[todo]), dtn, ktn, nodes, cup, mins, argd)
        viol = np.any(mins < -tol, axis=1) & ok[todo]
        if Cx.shape[0]:
            Cx, dx, nx = Cx[viol], dx[viol], nx[viol]
        else:
            k = int(viol.sum())
            Cx, dx, nx = np.zeros((k, 0, 22)), np.zeros((k, 0)), np.zeros(k, dtype=np.int64)
        todo, argd = todo[viol], argd[viol]
        if todo.size == 0:
            break
        rows = _violation_rows(argd)
        Cx = np.concatenate([Cx, rows], axis=1)
        dx = np.concatenate([dx, np.full(rows.shape[:2], margin)], axis=1)
        nx = nx + rows.shape[1]
        b1, ok1, r1 = solve_loglinear(X, Y[todo], method="wls", n_iter=1, min_signal=min_signal,
                                      constraints=(C, d), voxel_constraints=(Cx, dx, nx))
        beta[todo], ok[todo] = b1, ok1
        rounds[todo] += r1
    return beta, ok, rounds


def apparent_kurtosis(beta, directions) -> np.ndarray:
    """Apparent kurtosis K(n) = MD² W(n) / D(n)² along ``directions`` (k, 3) for coefficients
    ``beta`` (..., 22) (any units consistent with :func:`design_matrix`); returns (..., k)."""
    beta = np.asarray(beta, dtype=np.float64)
    n = np.asarray(directions, dtype=np.float64)
    dn = beta[..., :6] @ _dt_row(n).T
    qn = beta[..., 6:21] @ _kt_row(n).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return qn / (dn * dn)


# ---------------------------------------------------------------------------------------------
# Scalar maps (Numba, per voxel)
# ---------------------------------------------------------------------------------------------
@nb.njit(cache=True)
def _eigh3(a, w, V):
    """Eigen-decomposition of the symmetric 3×3 ``a`` by cyclic Jacobi; eigenvalues descending
    in ``w``, eigenvectors as the columns of ``V``."""
    A = a.copy()
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


@nb.njit(cache=True)
def _wpoly(W, x, y, z):
    """Σ W_ijkl n_i n_j n_k n_l for the 15 elements ``W`` (dipy order) and n = (x, y, z)."""
    return (W[0] * x ** 4 + W[1] * y ** 4 + W[2] * z ** 4
            + 4.0 * (W[3] * x ** 3 * y + W[4] * x ** 3 * z + W[5] * x * y ** 3 + W[6] * y ** 3 * z
                     + W[7] * x * z ** 3 + W[8] * y * z ** 3)
            + 6.0 * (W[9] * x * x * y * y + W[10] * x * x * z * z + W[11] * y * y * z * z)
            + 12.0 * (W[12] * x * x * y * z + W[13] * x * y * y * z + W[14] * x * y * z * z))


@nb.njit(cache=True)
def _w_rot(W, V, a, b):
    """Rotated element Ŵ_aabb in the eigenvector frame (columns a, b of V), by polarisation."""
    ux, uy, uz = V[0, a], V[1, a], V[2, a]
    if a == b:
        return _wpoly(W, ux, uy, uz)
    vx, vy, vz = V[0, b], V[1, b], V[2, b]
    return (_wpoly(W, ux + vx, uy + vy, uz + vz) + _wpoly(W, ux - vx, uy - vy, uz - vz)
            - 2.0 * _wpoly(W, ux, uy, uz) - 2.0 * _wpoly(W, vx, vy, vz)) / 12.0


@nb.njit(cache=True)
def _duplicate(x, y, z):
    """Carlson's duplication step: (x, y, z) → (x + λ)/4 ..., with λ = √x√y + √x√z + √y√z."""
    sx, sy, sz = np.sqrt(x), np.sqrt(y), np.sqrt(z)
    lam = sx * (sy + sz) + sy * sz
    return 0.25 * (x + lam), 0.25 * (y + lam), 0.25 * (z + lam), lam, sz


@nb.njit(cache=True)
def _carlson_rf(x, y, z):
    """Carlson's symmetric elliptic integral R_F (duplication; Carlson 1995, Numer. Algorithms 10:13)."""
    for _ in range(100):
        A = (x + y + z) / 3.0
        dx = 1.0 - x / A
        dy = 1.0 - y / A
        dz = 1.0 - z / A
        if max(abs(dx), abs(dy), abs(dz)) < 1e-4:
            break
        x, y, z, lam, sz = _duplicate(x, y, z)
    A = (x + y + z) / 3.0
    X = 1.0 - x / A
    Y = 1.0 - y / A
    Z = -X - Y
    E2 = X * Y - Z * Z
    E3 = X * Y * Z
    return (1.0 - E2 / 10.0 + E3 / 14.0 + E2 * E2 / 24.0 - 3.0 * E2 * E3 / 44.0) / np.sqrt(A)


@nb.njit(cache=True)
def _carlson_rd(x, y, z):
    """Carlson's symmetric elliptic integral R_D (duplication; Carlson 1995)."""
    s = 0.0
    fac = 1.0
    for _ in range(100):
        A = (x + y + 3.0 * z) / 5.0
        dx = 1.0 - x / A
        dy = 1.0 - y / A
        dz = 1.0 - z / A
        if max(abs(dx), abs(dy), abs(dz)) < 1e-4:
            break
        z_old = z
        x, y, z, lam, sz = _duplicate(x, y, z)
        s += fac / (sz * (z_old + lam))
        fac *= 0.25
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
    return 3.0 * s + fac * series / (A * np.sqrt(A))


_ER = 2.5e-2  # eigenvalues closer than 2.5% are treated as equal (dipy, Tabesh 2011 limits)


@nb.njit(cache=True)
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
    rf = _carlson_rf(a / b, a / c, 1.0)
    rd = _carlson_rd(a / b, a / c, 1.0)
    sbc = np.sqrt(b * c)
    return ((a + b + c) ** 2 / (3.0 * (b - c) ** 2)
            * ((b + c) / sbc * rf + (2.0 * a - b - c) / (3.0 * sbc) * rd - 2.0))


@nb.njit(cache=True)
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
    rf = _carlson_rf(a / b, a / c, 1.0)
    rd = _carlson_rd(a / b, a / c, 1.0)
    sbc = np.sqrt(b * c)
    return ((a + b + c) ** 2 / (18.0 * (a - b) * (a - c))
            * (sbc / a * rf + (3.0 * a * a - a * b - a * c - b * c) / (3.0 * a * sbc) * rd - 1.0))


@nb.njit(cache=True)
def _g1(a, b, c):
    if abs(b - c) >= b * _ER:
        return (a + b + c) ** 2 / (18.0 * b * (b - c) ** 2) * (2.0 * b + (c * c - 3.0 * b * c) / np.sqrt(b * c))
    return (a + 2.0 * b) ** 2 / (24.0 * b * b)


@nb.njit(cache=True)
def _g2(a, b, c):
    if abs(b - c) >= b * _ER:
        return (a + b + c) ** 2 / (3.0 * (b - c) ** 2) * ((b + c) / np.sqrt(b * c) - 2.0)
    return (a + 2.0 * b) ** 2 / (12.0 * b * b)


@nb.njit(cache=True)
def _clip(v, lo, hi):
    return min(max(v, lo), hi)


@nb.njit(cache=True)
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
        mk = (_f1(l1, l2, l3) * w1111 + _f1(l2, l1, l3) * w2222 + _f1(l3, l2, l1) * w3333
              + _f2(l1, l2, l3) * w2233 + _f2(l2, l1, l3) * w1133 + _f2(l3, l2, l1) * w1122)
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


@nb.njit(parallel=True, cache=True, fastmath=_FAST)
def _maps_batch(Bt, X, Y, min_diff, kmin, kmax, out, rmse, r2):
    n = Bt.shape[0]
    m, p = X.shape
    nblk = (n + 255) // 256
    for blk in nb.prange(nblk):
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
    res = {k: out[:, j] for j, k in enumerate(_OUT_NAMES)}
    res["rmse"], res["r2"] = rmse, r2
    return res


# ---------------------------------------------------------------------------------------------
# Full-tensor nonlinear model (declared: used by the ``nls`` method)
# ---------------------------------------------------------------------------------------------
@nb.njit(cache=True)
def dki_tensor_signal(p, acq, out):
    """``S0 exp(acq · p[1:])``; ``acq`` = the first 21 design-matrix columns (ms/µm²)."""
    for i in range(acq.shape[0]):
        s = 0.0
        for a in range(acq.shape[1]):
            s += acq[i, a] * p[1 + a]
        out[i] = p[0] * np.exp(s)


@nb.njit(cache=True)
def dki_tensor_jacobian(p, acq, J):
    for i in range(acq.shape[0]):
        s = 0.0
        for a in range(acq.shape[1]):
            s += acq[i, a] * p[1 + a]
        e = np.exp(s)
        J[i, 0] = e
        for a in range(acq.shape[1]):
            J[i, 1 + a] = p[0] * e * acq[i, a]


@nb.njit(cache=True)
def dki_tensor_signal_jacobian(p, acq, out, J):
    """Signal and Jacobian in one pass (one exponential per measurement)."""
    for i in range(acq.shape[0]):
        s = 0.0
        for a in range(acq.shape[1]):
            s += acq[i, a] * p[1 + a]
        e = np.exp(s)
        out[i] = p[0] * e
        J[i, 0] = e
        for a in range(acq.shape[1]):
            J[i, 1 + a] = p[0] * e * acq[i, a]


def dki_tensor_signal_torch(params, acq):
    """Full-tensor DKI signal in torch: ``params`` (N, 22), ``acq`` (n, 21) → (N, n)."""
    import torch

    return params[:, :1] * torch.exp(params[:, 1:] @ acq.T)


def _example_tensor_acquisition():
    g = hemisphere(20)
    b = np.r_[0.0, np.full(20, 1000.0), np.full(20, 2000.0)]
    return design_matrix(b, np.r_[[[1.0, 0, 0]], g, g])[:, :21]


DKI_TENSOR_MODEL = register(SignalModel(
    name="dki_tensor",
    parameters=(Parameter("S0", "a.u.", 0.0, np.inf, 1.0, "signal at b=0"),)
    + tuple(Parameter(f"D{k}", "um2/ms", -np.inf, np.inf, 1.0 if k[0] == k[1] else 0.0,
                      f"diffusion tensor element D_{k}") for k in DT_NAMES)
    + tuple(Parameter(f"MD2W{k}", "um4/ms2", -np.inf, np.inf, 0.0,
                      f"MD^2 times kurtosis tensor element W_{k}") for k in KT_NAMES),
    signal=dki_tensor_signal,
    jacobian=dki_tensor_jacobian,
    signal_jacobian=dki_tensor_signal_jacobian,
    torch_signal=dki_tensor_signal_torch,
    acquisition_doc="acq: the first 21 columns of qmri.models.dki.design_matrix (b in ms/um2)",
    example_acquisition=_example_tensor_acquisition,
    reference="Jensen et al., MRM 2005;53:1432 (doi:10.1002/mrm.20508); Jensen & Helpern, NMR Biomed 2010;23:698",
))


# ---------------------------------------------------------------------------------------------
# Acquisition checks shared by the model and the command line
# ---------------------------------------------------------------------------------------------
def shells(bvals) -> np.ndarray:
    """b-values rounded to the nearest :data:`SHELL_ROUNDING` s/mm² (b <= B0_THRESHOLD → 0)."""
    b = np.asarray(bvals, dtype=np.float64)
    r = np.round(b / SHELL_ROUNDING) * SHELL_ROUNDING
    return np.where(b <= B0_THRESHOLD, 0.0, r)


def n_directions(bvals, bvecs) -> int:
    """Distinct (non-collinear, antipodes identified) directions among b > B0_THRESHOLD."""
    b = np.asarray(bvals, dtype=np.float64)
    g = np.asarray(bvecs, dtype=np.float64)[b > B0_THRESHOLD]
    if g.size == 0:
        return 0
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    sign = np.where((g[:, 2] < -1e-9) | ((np.abs(g[:, 2]) <= 1e-9) & (g[:, 1] < 0)), -1.0, 1.0)
    return int(np.unique(np.round(g * sign[:, None], 3), axis=0).shape[0])


def check_bvecs(bvals, bvecs, *, where="b-vectors") -> np.ndarray:
    """Unit-normalised b-vectors; raise if a diffusion-weighted one is not of unit length (±1%)."""
    b = np.asarray(bvals, dtype=np.float64)
    g = np.asarray(bvecs, dtype=np.float64)
    if g.shape != (b.size, 3):
        raise QMRIInputError(f"{where}: expected {b.size} vectors of 3 components, got shape {g.shape}")
    norms = np.linalg.norm(g, axis=1)
    dw = b > B0_THRESHOLD
    bad = dw & (np.abs(norms - 1.0) > 1e-2)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise QMRIInputError(f"{where}: vector {i} (b={b[i]:g}) has length {norms[i]:.4f}, not 1; "
                             f"{int(bad.sum())} diffusion-weighted vector(s) are not unit length")
    out = g.copy()
    out[dw] /= norms[dw, None]
    out[~dw] = 0.0
    return out


def _check_bvals(bvals) -> np.ndarray:
    b = np.asarray(bvals, dtype=np.float64)
    if b.ndim != 1 or b.size == 0:
        raise QMRIInputError(f"b-values must be a 1-D list, got shape {b.shape}")
    if not np.all(np.isfinite(b)) or np.any(b < 0):
        raise QMRIInputError("b-values must be finite and >= 0 s/mm2")
    return b


# ---------------------------------------------------------------------------------------------
# Full-tensor model
# ---------------------------------------------------------------------------------------------
class DKI(Model):
    """Full-tensor diffusion kurtosis model bound to an acquisition.

    Parameters
    ----------
    bvals : array_like, shape (n,)
        b-values in s/mm²; b <= 50 counts as b=0.
    bvecs : array_like, shape (n, 3)
        Gradient directions, unit length (±1%) for b > 50 (normalised internally).
    min_kurtosis, max_kurtosis : float
        Clipping of the MK, AK, RK, MKT maps (default -3/7 and 10, dipy's defaults).
    min_signal : float
        Floor applied to the signal before the log (default 1e-4, dipy's).
    wls_iter : int
        Reweightings of the ``wls`` fit (default 1 = dipy's WLS: weights from the OLS prediction).
    lm_options : qmri.fitting.LMOptions, optional
        Stopping rules of the ``nls`` fit.

    Methods
    -------
    ``wls`` (default), ``ols``: linear least squares on log S (:mod:`qmri.fitting.linear`).
    ``nls``: bounded Levenberg–Marquardt on S (S0 >= 0) from the WLS solution.
    ``cwls``: WLS subject to D(n) >= 0, K(n) >= 0 and K(n) <= 3 / (b_max D(n)) on
    :data:`N_CONSTRAINT_DIRECTIONS` directions (Tabesh et al. 2011 CLLS constraints; the upper
    bound keeps the signal monotonically decreasing up to the largest b-value), solved exactly
    per voxel (:func:`qmri.fitting.linear.solve_loglinear`).

    Raises
    ------
    QMRIInputError
        Fewer than 3 distinct b-values (b=0 included) or 15 directions, b-vectors not unit
        length, rank-deficient design.
    """

    methods = ("wls", "ols", "nls", "cwls")
    default_method = "wls"

    def __init__(self, bvals, bvecs, *, min_kurtosis=MIN_KURTOSIS, max_kurtosis=MAX_KURTOSIS,
                 min_signal=MIN_SIGNAL, wls_iter: int = 1, lm_options: LMOptions | None = None):
        b = _check_bvals(bvals)
        g = check_bvecs(b, bvecs)
        n_shells = np.unique(shells(b)).size
        if n_shells < 3:
            raise QMRIInputError(f"full-tensor DKI needs at least 3 distinct b-values (b=0 included), got "
                                 f"{n_shells}: {sorted(set(shells(b).tolist()))}")
        n_dirs = n_directions(b, g)
        if n_dirs < 15:
            raise QMRIInputError(f"full-tensor DKI needs at least 15 distinct gradient directions, got {n_dirs}")
        self.bvals, self.bvecs = b, g
        self.n_measurements = b.size
        self.X = design_matrix(b, g)
        if np.linalg.matrix_rank(self.X) < 22:
            raise QMRIInputError("the acquisition does not determine the 22 DKI coefficients (rank-deficient "
                                 "design: need directions spread over the sphere on at least 2 non-zero shells)")
        self.min_kurtosis, self.max_kurtosis = float(min_kurtosis), float(max_kurtosis)
        self.min_signal = float(min_signal)
        self.wls_iter = int(wls_iter)
        self.lm_options = lm_options or LMOptions()
        # dipy's eigenvalue floor: 1e-6 / -min(design matrix in s/mm²), in mm²/s
        self.min_diffusivity = 1e-6 / (-(self.X[:, :6] * 1000.0).min()) if (self.X[:, :6] < 0).any() else 0.0
        self.b_max = float(b.max())

    def check_method(self, method):
        if method not in self.methods:
            raise QMRIInputError(f"unknown method {method!r}; choose one of {', '.join(self.methods)}")

    def output_units(self, method):
        return dict(FULL_OUTPUTS)

    def provenance(self, method):
        prov = {
            "bvals": self.bvals.tolist(), "units_b": "s/mm2", "n_directions": n_directions(self.bvals, self.bvecs),
            "internal_units": "b in ms/um2, diffusivities in um2/ms (outputs in mm2/s)",
            "kurtosis_clip": [self.min_kurtosis, self.max_kurtosis], "min_signal": self.min_signal,
            "eigenvalue_floor_mm2_s": self.min_diffusivity,
            "MK": "analytic (Tabesh et al. 2011)", "MKT": "mean of the kurtosis tensor (Hansen et al. 2013)",
            "reference": DKI_TENSOR_MODEL.reference,
        }
        if method == "wls":
            prov["wls_reweightings"] = self.wls_iter
        if method == "cwls":
            prov["constraints"] = (f"D(n) >= 0, 0 <= K(n) <= {KURTOSIS_MONOTONIC_C:g}/(b_max D(n)) on "
                                   f"{N_CONSTRAINT_DIRECTIONS} directions, b_max = {self.b_max:g} s/mm2 "
                                   "(Tabesh et al., MRM 2011;65:823)")
        return prov

    def signal(self, S0, dt, kt) -> np.ndarray:
        """Noise-free DKI signal.

        Parameters
        ----------
        S0 : array_like, shape (...)
        dt : array_like, shape (..., 6)
            Diffusion tensor (xx, xy, yy, xz, yz, zz) in mm²/s.
        kt : array_like, shape (..., 15)
            Kurtosis tensor elements (dipy order, unitless).

        Returns
        -------
        ndarray, shape (..., n)
        """
        return dki_signal(self.bvals, self.bvecs, dt, kt, S0)

    def coefficients(self, Y, method) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """β (n, 22), status (n,) and iterations (n,) of ``method`` on signals ``Y`` (n, m)."""
        if method == "ols":
            beta, ok, rounds = solve_loglinear(self.X, Y, method="ols", min_signal=self.min_signal)
        elif method == "cwls":
            beta, ok, rounds = constrained_fit(self.X, Y, self.b_max, min_signal=self.min_signal)
        else:
            beta, ok, rounds = solve_loglinear(self.X, Y, method="wls", n_iter=self.wls_iter,
                                               min_signal=self.min_signal)
        status = np.where(ok, STATUS_CONVERGED, STATUS_FAILED).astype(np.int8)
        n_iter = rounds.astype(np.int32)
        if method == "nls":
            start = np.where(ok[:, None], beta, 0.0)
            scale = np.exp(np.clip(start[:, 21], -700, 700))
            scale = np.where(ok & np.isfinite(scale) & (scale > 0), scale, 1.0)
            Yn = Y / scale[:, None]
            p0 = np.concatenate([np.ones((Y.shape[0], 1)), start[:, :21]], axis=1)
            res = fit_lm(DKI_TENSOR_MODEL, self.X[:, :21], Yn, p0, options=self.lm_options)
            P = np.stack([res.params[k] for k in DKI_TENSOR_MODEL.names], axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                beta = np.concatenate([P[:, 1:], np.log(P[:, :1] * scale[:, None])], axis=1)
            status = np.where(ok, res.status, STATUS_FAILED).astype(np.int8)
            n_iter = res.n_iter
            beta[status == STATUS_FAILED] = np.nan
        return beta, status, n_iter

    def _fit_voxels(self, Y, method, compute_se):
        beta, status, n_iter = self.coefficients(Y, method)
        maps = tensor_maps(beta, X=self.X, signals=Y, min_diffusivity=self.min_diffusivity,
                           min_kurtosis=self.min_kurtosis, max_kurtosis=self.max_kurtosis)
        bad = ~np.isfinite(maps["MD"])
        status = status.copy()
        status[bad] = STATUS_FAILED
        rmse, r2 = maps.pop("rmse"), maps.pop("r2")
        return FitResult(params=maps, status=status, n_iter=n_iter, rmse=rmse, r2=r2)


def dki_signal(bvals, bvecs, dt, kt, S0=1.0) -> np.ndarray:
    """DKI signal for tensors ``dt`` (..., 6) in mm²/s and ``kt`` (..., 15), b in s/mm²; (..., n)."""
    dt = np.asarray(dt, dtype=np.float64)
    kt = np.asarray(kt, dtype=np.float64)
    md = (dt[..., 0] + dt[..., 2] + dt[..., 5]) / 3.0 * 1e3
    beta = np.concatenate([dt * 1e3, kt * (md * md)[..., None]], axis=-1)
    X = design_matrix(bvals, bvecs)[:, :21]
    return np.asarray(S0, dtype=np.float64)[..., None] * np.exp(beta @ X.T)


def tensors_from_compartments(fractions, evals, directions):
    """Diffusion and kurtosis tensors of a mixture of non-exchanging Gaussian compartments.

    ``D = Σ f_i D_i`` and ``W_ijkl = 3/MD² · (Σ_c f_c sym(D_c⊗D_c) − sym(D⊗D))``, with
    ``sym(A⊗A)_ijkl = (A_ij A_kl + A_ik A_jl + A_il A_jk)/3`` (Jensen et al. 2005; the same
    cumulant expansion as ``dipy.sims.voxel.multi_tensor_dki``).

    Parameters
    ----------
    fractions : array_like, shape (c,)
        Signal fractions (summing to 1).
    evals : array_like, shape (c, 3)
        Compartment eigenvalues in mm²/s (principal first).
    directions : array_like, shape (c, 3)
        Principal direction of each compartment (the other two are perpendicular; axially
        symmetric use only needs the first).

    Returns
    -------
    dt : ndarray (6,), mm²/s (xx, xy, yy, xz, yz, zz)
    kt : ndarray (15,), dipy order
    """
    f = np.asarray(fractions, dtype=np.float64)
    ev = np.asarray(evals, dtype=np.float64)
    dirs = np.asarray(directions, dtype=np.float64)
    Ds = []
    for lam, u in zip(ev, dirs):
        u = u / np.linalg.norm(u)
        a = np.array([1.0, 0, 0]) if abs(u[0]) < 0.9 else np.array([0, 1.0, 0])
        v = np.cross(u, a)
        v /= np.linalg.norm(v)
        w = np.cross(u, v)
        R = np.stack([u, v, w], axis=1)
        Ds.append(R @ np.diag(lam) @ R.T)
    Ds = np.array(Ds)
    Dm = np.einsum("c,cij->ij", f, Ds)

    def sym(A):
        return (np.einsum("ij,kl->ijkl", A, A) + np.einsum("ik,jl->ijkl", A, A) + np.einsum("il,jk->ijkl", A, A)) / 3

    md = np.trace(Dm) / 3.0
    W = 3.0 / md ** 2 * (sum(fc * sym(Dc) for fc, Dc in zip(f, Ds)) - sym(Dm))
    idx = {"x": 0, "y": 1, "z": 2}
    kt = np.array([W[tuple(idx[c] for c in name)] for name in KT_NAMES])
    dt = np.array([Dm[idx[n[0]], idx[n[1]]] for n in DT_NAMES])
    return dt, kt


# ---------------------------------------------------------------------------------------------
# Trace / powder DKI
# ---------------------------------------------------------------------------------------------
@nb.njit(cache=True)
def dki_trace_signal(p, acq, out):
    """``S0 exp(-b D + b² D² K / 6)``; ``p = (S0, D, K)``, ``acq[:, 0]`` = b (s/mm²)."""
    S0, D, K = p[0], p[1], p[2]
    for i in range(acq.shape[0]):
        b = acq[i, 0]
        out[i] = S0 * np.exp(-b * D + b * b * D * D * K / 6.0)


@nb.njit(cache=True)
def dki_trace_jacobian(p, acq, J):
    S0, D, K = p[0], p[1], p[2]
    for i in range(acq.shape[0]):
        b = acq[i, 0]
        e = np.exp(-b * D + b * b * D * D * K / 6.0)
        J[i, 0] = e
        J[i, 1] = S0 * e * (-b + b * b * D * K / 3.0)
        J[i, 2] = S0 * e * b * b * D * D / 6.0


@nb.njit(cache=True)
def dki_trace_signal_jacobian(p, acq, out, J):
    """Signal and Jacobian in one pass (one exponential per b-value)."""
    S0, D, K = p[0], p[1], p[2]
    for i in range(acq.shape[0]):
        b = acq[i, 0]
        e = np.exp(-b * D + b * b * D * D * K / 6.0)
        out[i] = S0 * e
        J[i, 0] = e
        J[i, 1] = S0 * e * (-b + b * b * D * K / 3.0)
        J[i, 2] = S0 * e * b * b * D * D / 6.0


def dki_trace_signal_torch(params, acq):
    """Trace DKI in torch: ``params`` (N, 3) as (S0, D, K), ``acq`` (n, 1) → (N, n)."""
    import torch

    b = acq[:, 0]
    S0, D, K = (params[:, j:j + 1] for j in range(3))
    return S0 * torch.exp(-b * D + b * b * D * D * K / 6.0)


DKI_TRACE_MODEL = register(SignalModel(
    name="dki_trace",
    parameters=(
        Parameter("S0", "a.u.", 0.1, 100.0, 1.0,
                  "signal at b=0; bounds relative to the mean signal at the lowest b-value"),
        Parameter("D", "mm2/s", 1e-6, 0.005, 0.0012, "apparent diffusion coefficient (kurtosis-corrected)"),
        Parameter("K", "", 0.0, 3.0, 0.8, "apparent kurtosis"),
    ),
    signal=dki_trace_signal,
    jacobian=dki_trace_jacobian,
    signal_jacobian=dki_trace_signal_jacobian,
    torch_signal=dki_trace_signal_torch,
    acquisition_doc="acq[:, 0]: b-values in s/mm2 (direction-averaged or trace-weighted images)",
    example_acquisition=lambda: np.array([0, 200, 500, 800, 1000, 1500, 2000.0])[:, None],
    reference="Jensen et al., MRM 2005;53:1432; body DKI review: Rosenkrantz et al., JMRI 2015;42:1190",
))


def powder_average(data, bvals, bvecs=None):
    """Average the volumes of each b-shell (arithmetic mean over directions, as dipy's msdki).

    Parameters
    ----------
    data : ndarray, shape (..., n)
    bvals : array_like, shape (n,)
        b-values in s/mm²; shells are b rounded to :data:`SHELL_ROUNDING` (b <= 50 → 0).
    bvecs : array_like, optional
        When None, each volume is kept as its own b-value (already trace-weighted images).

    Returns
    -------
    averaged : ndarray, shape (..., n_shells)
    shell_bvals : ndarray, shape (n_shells,)
        Mean actual b-value of each shell (s/mm²), ascending.
    """
    b = _check_bvals(bvals)
    data = np.asarray(data)
    if bvecs is None:
        return data, b
    key = shells(b)
    uniq = np.unique(key)
    avg = np.stack([data[..., key == u].mean(axis=-1) for u in uniq], axis=-1)
    return avg, np.array([b[key == u].mean() for u in uniq])


class TraceDKI(Model):
    """Trace (powder) DKI, ``S = S0 exp(-b D + b² D² K/6)``, on direction-averaged images.

    Parameters
    ----------
    bvals : array_like, shape (n,)
        b-values (s/mm²) of the images (b=0 need not be present).
    bounds : dict, optional
        ``{name: (lower, upper)}`` overriding the defaults (S0 0.1–100 relative to the mean
        signal at the lowest b-value, D 1e-6–0.005 mm²/s, K 0–3).
    lm_options : qmri.fitting.LMOptions, optional

    Notes
    -----
    The start is a log-quadratic least-squares fit (``log S = a − b D + b² c``, K = 6c/D²)
    clipped into the bounds; then bounded Levenberg–Marquardt on the signals normalised by the
    mean signal at the lowest b-value.

    Raises
    ------
    QMRIInputError
        Fewer than 3 distinct b-values; bad b-values or bounds.
    """

    methods = ("lsq",)
    default_method = "lsq"
    spec = DKI_TRACE_MODEL

    def __init__(self, bvals, *, bounds=None, lm_options: LMOptions | None = None):
        b = _check_bvals(bvals)
        if np.unique(shells(b)).size < 3:
            raise QMRIInputError(f"trace DKI needs at least 3 distinct b-values, got "
                                 f"{np.unique(shells(b)).size}: {sorted(set(shells(b).tolist()))}")
        self.bvals = b
        self.n_measurements = b.size
        self.lower, self.upper = resolve_bounds(DKI_TRACE_MODEL, bounds)
        self.lm_options = lm_options or LMOptions(max_iter=200, xtol=1e-10, ftol=1e-14, gtol=1e-14)
        self._acq = np.ascontiguousarray(b[:, None])

    def output_units(self, method):
        return DKI_TRACE_MODEL.units

    def provenance(self, method):
        return {"bvals": self.bvals.tolist(), "units_b": "s/mm2",
                "bounds": {n: [float(a), float(c)] for n, a, c in zip(DKI_TRACE_MODEL.names, self.lower, self.upper)},
                "bounds_note": "S0 bounds are relative to the mean signal at the lowest b-value",
                "reference": DKI_TRACE_MODEL.reference}

    def signal(self, params) -> np.ndarray:
        """Noise-free signal for ``{"S0", "D", "K"}`` (scalars or arrays); shape (..., n)."""
        arrays = np.broadcast_arrays(*(np.asarray(params[k], dtype=np.float64) for k in DKI_TRACE_MODEL.names))
        P = np.stack([a.ravel() for a in arrays], axis=1)
        return DKI_TRACE_MODEL.evaluate(P, self._acq).reshape(arrays[0].shape + (self.n_measurements,))

    def _fit_voxels(self, Y, method, compute_se):
        Yn, scale, good = normalise_to_lowest_b(Y, self.bvals)
        # log-quadratic start (b in ms/µm² for conditioning)
        bs = self.bvals / 1000.0
        Xq = np.stack([np.ones_like(bs), -bs, bs * bs], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            coef = np.log(np.clip(np.where(good[:, None], Yn, 1.0), 1e-6, None)) @ np.linalg.pinv(Xq).T
            D0 = coef[:, 1] * 1e-3
            D0 = np.clip(np.where(np.isfinite(D0), D0, DKI_TRACE_MODEL.initial[1]), self.lower[1], self.upper[1])
            K0 = 6.0 * coef[:, 2] / (D0 * 1e3) ** 2
            K0 = np.clip(np.where(np.isfinite(K0), K0, DKI_TRACE_MODEL.initial[2]), self.lower[2], self.upper[2])
            S00 = np.clip(np.exp(coef[:, 0]), self.lower[0], self.upper[0])
        p0 = np.stack([np.where(np.isfinite(S00), S00, 1.0), D0, K0], axis=1)
        opts = dataclasses.replace(self.lm_options, compute_se=bool(compute_se))
        res = fit_lm(DKI_TRACE_MODEL, self._acq, Yn, p0, lower=self.lower, upper=self.upper, options=opts)
        res.rescale("S0", scale)
        res.mark_failed(~good)
        return res
