"""The constrained DKI fit (``cwls``): WLS with D(n) >= 0 and 0 <= K(n) <= c/(b_max D(n)) on the sphere.

Tabesh et al., MRM 2011;65:823 (doi:10.1002/mrm.22655), constrained linear least squares (CLLS):
the constraints are linear in the coefficients β since ``K(n) D(n)² = MD² W(n)``. They are imposed
on fixed directions and, per voxel, on the directions where a constraint is most violated, found by
a search over the whole sphere (:func:`constrained_fit`).
"""

from __future__ import annotations

import numpy as np

from qmri.fitting.linear import MIN_SIGNAL, solve_loglinear
from qmri.jit import njit, prange
from qmri.models.diffusion.dki.design import KURTOSIS_MONOTONIC_C, constraint_matrix, dt_row, hemisphere, kt_row
from qmri.models.diffusion.dki.metrics import kurtosis_polynomial


@njit(cache=True)
def _dir_value(beta, kind, cup, x, y, z):
    dn = (beta[0] * x * x + 2.0 * beta[1] * x * y + beta[2] * y * y + 2.0 * beta[3] * x * z
          + 2.0 * beta[4] * y * z + beta[5] * z * z)
    if kind == 0:
        return dn
    qn = kurtosis_polynomial(beta[6:21], x, y, z)
    if kind == 1:
        return qn
    return cup * dn - qn


@njit(cache=True)
def _dir_at(n0, t1, t2, a, b, out):
    x = n0[0] + a * t1[0] + b * t2[0]
    y = n0[1] + a * t1[1] + b * t2[1]
    z = n0[2] + a * t1[2] + b * t2[2]
    r = np.sqrt(x * x + y * y + z * z)
    out[0] = x / r
    out[1] = y / r
    out[2] = z / r


_N_STARTS = 4


@njit(parallel=True, cache=True)
def _sphere_minima(Bt, dtn, ktn, nodes, cup, mins, argdirs):
    """Per voxel, for D(n) and K(n)D(n)²: the minimum over the sphere, found by damped Newton
    steps in the tangent plane (finite-difference derivatives of the quadratic / quartic) from
    the lowest nodes at least ~35° apart; ``mins[:, 2]`` (the upper bound) is left at 0."""
    n = Bt.shape[0]
    nn = nodes.shape[0]
    for v in prange(n):
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
    rows[:, 0, :, :6] = dt_row(dirs[:, 0])
    rows[:, 1, :, 6:21] = kt_row(dirs[:, 1])
    return rows.reshape(k, 10, 22)


def constrained_fit(X, Y, b_max, *, min_signal=MIN_SIGNAL, n_dirs=None, c=KURTOSIS_MONOTONIC_C,
                    tol=1e-7, max_refine=6, margin=1e-6, return_constraints=False):
    """The ``cwls`` fit: WLS with D(n) >= 0, 0 <= K(n) <= c/(b_max D(n)) for *every* direction.

    The constraints are first imposed on :data:`N_CONSTRAINT_DIRECTIONS` fixed directions
    (exact solution by :func:`qmri.fitting.linear.solve_loglinear`); then, per voxel, the minimum
    of D(n) and of K(n)D(n)² over the whole sphere is located (Newton steps from the best
    direction) and, where it is below ``-tol``, that direction (with 4 neighbours) is added to
    the voxel's constraints, with a margin ``margin`` (µm²/ms for D, µm⁴/ms² for MD²W: a
    kurtosis bias below 1e-5), and the voxel is solved again (at most ``max_refine`` times). The
    upper bound is imposed on the fixed directions only (between them it can be exceeded
    slightly; the positivity constraints are the ones that matter for plausibility).

    Every voxel whose weighted system can be solved gets its constrained optimum: the
    constraints always admit a solution (D isotropic and positive, W = 0), and the solver
    (:func:`qmri.fitting.linear.solve_loglinear`) returns the exact optimum of any feasible set.

    Returns
    -------
    beta : ndarray (n, 22); ok : ndarray of bool (n,); rounds : ndarray of int32 (n,)
    constraints : tuple (C, d, extra), only with ``return_constraints``
        The fixed constraints ``C β >= d`` and ``extra``, a dict {voxel index: (rows (k, 22),
        bounds (k,))} of the per-voxel ones: each voxel's ``beta`` is the WLS optimum subject to
        both (for checking against a general solver).
    """
    C, d = constraint_matrix(b_max, n_dirs, c)
    beta, ok, rounds = solve_loglinear(X, Y, method="wls", n_iter=1, min_signal=min_signal, constraints=(C, d))
    n_dirs = C.shape[0] // 3
    nodes = np.ascontiguousarray(hemisphere(n_dirs))
    dtn, ktn = np.ascontiguousarray(dt_row(nodes)), np.ascontiguousarray(kt_row(nodes))
    cup = c / (b_max / 1000.0)
    todo = np.arange(Y.shape[0])
    Cx, dx = np.zeros((0, 0, 22)), np.zeros((0, 0))
    nx = np.zeros(0, dtype=np.int64)
    extra = {}
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
        if return_constraints:
            extra.update({int(v): (Cx[i, :nx[i]], dx[i, :nx[i]]) for i, v in enumerate(todo)})
    if return_constraints:
        return beta, ok, rounds, (C, d, extra)
    return beta, ok, rounds
