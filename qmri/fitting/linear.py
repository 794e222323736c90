"""Batched linear least squares for log-linear signal models, in Numba.

Many diffusion models are linear in their parameters once the signal is log-transformed,
``log S = X β`` (mono-exponential ADC, the diffusion tensor, the diffusion kurtosis tensor). This
module solves such problems for many voxels at once; it knows nothing about a particular model:
it receives the design matrix ``X`` (n_measurements, n_coefficients), shared by every voxel, and
returns the coefficients.

Estimators (per voxel, ``y = log(max(S, min_signal))``)
-------------------------------------------------------
``ols``
    Ordinary least squares, ``β = X⁺ y`` (pseudo-inverse computed once).
``wls``
    Weighted least squares with weights equal to the squared *predicted* signal,
    ``w_i = exp(2 x_iᵀ β_prev)``, starting from the OLS solution (Veraart et al., NeuroImage
    2013;81:335, doi:10.1016/j.neuroimage.2013.05.028). ``n_iter`` reweightings are done; one
    reweighting (the default) is exactly dipy's ``WLS`` definition for DTI and DKI
    (``dipy.reconst.dki.ls_fit_dki``: weights from the OLS prediction, then one weighted solve).
    The weighted problem is solved by its normal equations (Cholesky), which gives the same
    solution as dipy's ``pinv(W X) W y`` whenever ``X`` has full column rank.
``constrained``
    The weighted problem above subject to linear inequalities ``C β >= d``, solved exactly as a
    least-distance problem (Lawson & Hanson, *Solving Least Squares Problems*, 1974, ch. 23):
    with ``XᵀWX = L Lᵀ`` and ``u = Lᵀ(β − β_wls)``, minimise ``‖u‖`` subject to
    ``(C L⁻ᵀ) u >= d − C β_wls``, which is dual to a non-negative least-squares problem solved by
    the Lawson–Hanson active-set algorithm (same book, ch. 23, algorithm NNLS). Only constraints
    violated by the current solution enter the problem (a working set that only grows, so the
    rounds end: at worst every constraint is in it and the solution is the exact optimum);
    rounds are repeated until every one of ``C β >= d`` holds to ``1e-10`` (relative), so voxels
    where the unconstrained solution is already feasible cost one matrix–vector product. The
    normal matrix is scaled to unit mean diagonal before it is factored (same minimiser), so the
    solver's tolerances do not depend on the signal's units. A feasible set of constraints (one
    admitting some β) therefore always gives the constrained optimum; only an infeasible set
    (or a singular weighted system) fails.

All kernels are Numba kernels (:func:`qmri.jit.njit`) with ``cache=True``; the batch drivers use ``prange`` over voxels
and allocate their work arrays once per block of voxels.
"""

from __future__ import annotations

import numpy as np

from qmri.fitting.linalg import cholesky_factor, cholesky_solve
from qmri.jit import FASTMATH, njit, prange

#: Default floor applied to signals before the log (dipy's ``MIN_POSITIVE_SIGNAL``).
MIN_SIGNAL = 1e-4
#: Violated constraints added to the working set per round (the most violated first).
ADD_PER_ROUND = 8
_BLOCK = 256


# ---------------------------------------------------------------------------------------------
# Per-voxel building blocks (njit, reused by model kernels)
# ---------------------------------------------------------------------------------------------
@njit(cache=True)
def outer_products(X):
    """Upper triangles of ``x_i x_iᵀ`` for every row, transposed: (p(p+1)/2, m), so that the
    normal matrix is one contiguous matrix–vector product per voxel."""
    m, p = X.shape
    out = np.empty((p * (p + 1) // 2, m))
    for i in range(m):
        k = 0
        for a in range(p):
            for b in range(a, p):
                out[k, i] = X[i, a] * X[i, b]
                k += 1
    return out


def weight_moments(X, rtol: float = 1e-13):
    """The distinct products of design columns: ``XᵀWX`` of any weights from a few weighted sums.

    Every entry ``(a, b)`` of the normal matrix is ``Σ_i w_i X_ia X_ib``. Many of the
    ``p(p+1)/2`` product rows ``X_ia X_ib`` (over the measurements ``i``) are equal up to a factor
    (the DKI design's monomials of the gradient direction, say: 95 distinct rows of 253), so the
    matrix needs only the weighted sums of the distinct rows.

    Parameters
    ----------
    X : ndarray, shape (m, p)
    rtol : float
        Rows are merged only if they agree to this relative tolerance after scaling.

    Returns
    -------
    M : ndarray, shape (q, m)
        The distinct rows (q <= p(p+1)/2).
    index : ndarray of int64, shape (p(p+1)/2,)
        For each upper-triangle entry, in row-major order, the row of ``M`` it is a multiple of.
    scale : ndarray, shape (p(p+1)/2,)
        The multiple: entry ``r`` is ``scale[r] · Σ_i w_i M[index[r], i]``.
    """
    XX = outer_products(np.ascontiguousarray(X, dtype=np.float64))
    rows, keys = [], {}
    index = np.empty(XX.shape[0], dtype=np.int64)
    scale = np.empty(XX.shape[0])
    for r, row in enumerate(XX):
        big = np.abs(row).max()
        if big == 0.0:
            lead = 0
            key = ("zero",)
        else:
            lead = int(np.argmax(np.abs(row)))
            key = (lead, tuple(np.round(row / row[lead], 9)))
        k = keys.get(key)
        if key == ("zero",):
            factor = 0.0
        else:
            factor = row[lead] / rows[k][lead] if k is not None else 1.0
        if k is None or not np.allclose(row, factor * rows[k], rtol=rtol, atol=0.0):
            k = len(rows)
            rows.append(row if key != ("zero",) else np.zeros_like(row))
            keys.setdefault(key, k)
            factor = 1.0 if key != ("zero",) else 0.0
        index[r], scale[r] = k, factor
    return np.ascontiguousarray(np.array(rows)), index, scale


@njit(cache=True)
def log_signal(s, min_signal, y):
    """``y = log(max(s, min_signal))``; False if any signal is non-finite or all are <= 0."""
    anypos = False
    for i in range(s.shape[0]):
        v = s[i]
        if not np.isfinite(v):
            return False
        if v > 0.0:
            anypos = True
        y[i] = np.log(max(v, min_signal))
    return anypos


@njit(cache=True, fastmath=FASTMATH)
def ols_voxel(Xpinv, y, beta):
    """``β = X⁺ y``."""
    p, m = Xpinv.shape
    for a in range(p):
        s = 0.0
        for i in range(m):
            s += Xpinv[a, i] * y[i]
        beta[a] = s


@njit(cache=True, fastmath=FASTMATH)
def weights_from_prediction(XT, beta, w):
    """``w_i = exp(2 x_iᵀ β)``: the squared predicted signal (Veraart 2013); ``XT`` is (p, m)."""
    p, m = XT.shape
    for i in range(m):
        w[i] = 0.0
    for a in range(p):
        ba = beta[a]
        for i in range(m):
            w[i] += XT[a, i] * ba
    for i in range(m):
        w[i] = np.exp(2.0 * w[i])


@njit(cache=True, fastmath=FASTMATH)
def normal_equations(XT, M, index, scale, y, w, A, g, mom):
    """``A = Xᵀ W X`` (from the distinct column products ``M``, ``index``, ``scale`` of
    :func:`weight_moments`) and ``g = Xᵀ W y``; ``XT`` is the transposed design matrix (p, m);
    ``mom`` (q,) is work space."""
    p, m = XT.shape
    for k in range(M.shape[0]):
        s = 0.0
        for i in range(m):
            s += w[i] * M[k, i]
        mom[k] = s
    r = 0
    for a in range(p):
        for b in range(a, p):
            v = scale[r] * mom[index[r]]
            A[a, b] = v
            A[b, a] = v
            r += 1
    for a in range(p):
        s = 0.0
        for i in range(m):
            s += w[i] * XT[a, i] * y[i]
        g[a] = s


@njit(cache=True)
def wls_voxel(XT, M, index, scale, Xpinv, y, n_iter, beta, w, A, g, L, mom):
    """OLS start then ``n_iter`` reweighted solves; False if a weighted system is singular."""
    ols_voxel(Xpinv, y, beta)
    for _ in range(n_iter):
        weights_from_prediction(XT, beta, w)
        normal_equations(XT, M, index, scale, y, w, A, g, mom)
        if not cholesky_solve(A, g, beta, L, XT.shape[0]):
            return False
    return True


@njit(cache=True)
def _householder_ls(E, cols, k, f, z, Q, rhs):
    """Least squares ``min ‖E[:, cols[:k]] z − f‖`` by Householder QR (rows m <= ~30)."""
    m = E.shape[0]
    for j in range(k):
        c = cols[j]
        for i in range(m):
            Q[i, j] = E[i, c]
    for i in range(m):
        rhs[i] = f[i]
    for j in range(k):
        nrm = 0.0
        for i in range(j, m):
            nrm += Q[i, j] * Q[i, j]
        nrm = np.sqrt(nrm)
        if nrm == 0.0:
            return False
        alpha = -nrm if Q[j, j] >= 0.0 else nrm
        v0 = Q[j, j] - alpha
        # Householder vector v = (v0, Q[j+1:, j]); H = I - 2 v vᵀ / vᵀv
        vtv = v0 * v0
        for i in range(j + 1, m):
            vtv += Q[i, j] * Q[i, j]
        if vtv == 0.0:
            Q[j, j] = alpha
            continue
        for c2 in range(j + 1, k):
            s = v0 * Q[j, c2]
            for i in range(j + 1, m):
                s += Q[i, j] * Q[i, c2]
            s = 2.0 * s / vtv
            Q[j, c2] -= s * v0
            for i in range(j + 1, m):
                Q[i, c2] -= s * Q[i, j]
        s = v0 * rhs[j]
        for i in range(j + 1, m):
            s += Q[i, j] * rhs[i]
        s = 2.0 * s / vtv
        rhs[j] -= s * v0
        for i in range(j + 1, m):
            rhs[i] -= s * Q[i, j]
        Q[j, j] = alpha
    for j in range(k - 1, -1, -1):
        s = rhs[j]
        for c2 in range(j + 1, k):
            s -= Q[j, c2] * z[c2]
        if Q[j, j] == 0.0:
            return False
        z[j] = s / Q[j, j]
    return True


@njit(cache=True)
def nnls_small(E, f, x, passive, cols, z, Q, rhs, resid, wdual, max_iter):
    """Lawson–Hanson NNLS, ``min ‖E x − f‖`` subject to ``x >= 0``, for a short wide ``E``.

    ``E`` is (m, K) with m small; on return ``x`` (K,) holds the solution and ``resid`` (m,)
    ``E x − f``. Returns the number of outer iterations (-1 if the limit was reached).
    """
    m, K = E.shape
    for j in range(K):
        x[j] = 0.0
        passive[j] = False
    tol = 1e-12
    it = 0
    while True:
        # dual vector w = Eᵀ (f − E x)
        for i in range(m):
            s = f[i]
            for j in range(K):
                if x[j] != 0.0:
                    s -= E[i, j] * x[j]
            resid[i] = s
        best = -1
        bestw = tol
        for j in range(K):
            if not passive[j]:
                s = 0.0
                for i in range(m):
                    s += E[i, j] * resid[i]
                wdual[j] = s
                if s > bestw:
                    bestw = s
                    best = j
        if best < 0:
            break
        it += 1
        if it > max_iter:
            it = -1
            break
        passive[best] = True
        while True:
            k = 0
            for j in range(K):
                if passive[j]:
                    cols[k] = j
                    k += 1
            if k > m or not _householder_ls(E, cols, k, f, z, Q, rhs):
                # dependent column: drop the newest and stop adding
                passive[best] = False
                break
            allpos = True
            for t in range(k):
                if z[t] <= tol:
                    allpos = False
            if allpos:
                for t in range(k):
                    x[cols[t]] = z[t]
                break
            alpha = 2.0
            for t in range(k):
                if z[t] <= tol:
                    xj = x[cols[t]]
                    a = xj / (xj - z[t]) if xj - z[t] != 0.0 else 0.0
                    if a < alpha:
                        alpha = a
            for t in range(k):
                j = cols[t]
                x[j] = x[j] + alpha * (z[t] - x[j])
                if x[j] <= tol:
                    x[j] = 0.0
                    passive[j] = False
        if not passive[best] and x[best] == 0.0:
            # could not make progress with this column
            wdual[best] = 0.0
            break
    for i in range(m):
        s = -f[i]
        for j in range(K):
            s += E[i, j] * x[j]
        resid[i] = s
    return it


@njit(cache=True)
def constrained_voxel(C, d, A, L, beta, cval, act, nact, G, E, f, x, passive, cols, z, Q, rhs, resid,
                      wdual, ubuf, tol, atol):
    """Enforce ``C β >= d`` on the weighted solution ``beta`` (whose normal matrix ``A`` is given).

    ``beta`` is replaced in place by the constrained minimiser. The work arrays ``nact``, ``G``,
    ``E``, ``x``, ``passive``, ``cols``, ``z``, ``Q``, ``wdual`` hold one column per constraint
    (``C.shape[0]`` at least). ``A`` is overwritten. Returns (ok, rounds); not ok only when the
    weighted system is singular or the constraints are incompatible.
    """
    p = beta.shape[0]
    nc = C.shape[0]
    # scale A to unit mean diagonal: same minimiser, tolerances independent of the signal's units
    sa = 0.0
    for a in range(p):
        sa += A[a, a]
    sa /= p
    if not (sa > 0.0 and np.isfinite(sa)):
        return False, 0
    for a in range(p):
        for b in range(p):
            A[a, b] /= sa
    if not cholesky_factor(A, L, p):
        return False, 0
    beta0 = ubuf[p:2 * p]
    for a in range(p):
        beta0[a] = beta[a]
    n_act = 0
    rnd = 0
    while True:
        # evaluate all constraints at the current beta; add the ADD_PER_ROUND most violated
        added = 0
        nv = 0
        for c in range(nc):
            s = -d[c]
            scale = abs(d[c])
            for a in range(p):
                t = C[c, a] * beta[a]
                s += t
                scale += abs(t)
            cval[c] = s if s < -(tol * scale + atol) else 0.0
            if cval[c] < 0.0 and not act[c]:
                nv += 1
        for _ in range(min(nv, ADD_PER_ROUND)):
            best = -1
            bv = 0.0
            for c in range(nc):
                if not act[c] and cval[c] < bv:
                    bv = cval[c]
                    best = c
            if best < 0:
                break
            act[best] = True
            nact[n_act] = best
            n_act += 1
            added += 1
        if added == 0:
            # feasible (violations left, if any, are on constraints already held active: rounding)
            return True, rnd
        rnd += 1
        # LDP on the working set: rows g_k = L⁻¹ c_k (forward substitution), h_k = d_k − c_kᵀ β0
        for t in range(n_act):
            c = nact[t]
            for i in range(p):
                s = C[c, i]
                for k in range(i):
                    s -= L[i, k] * G[k, t]
                G[i, t] = s / L[i, i]
            s = d[c]
            for a in range(p):
                s -= C[c, a] * beta0[a]
            # E = [Gᵀ ; hᵀ] as columns
            for i in range(p):
                E[i, t] = G[i, t]
            E[p, t] = s
        for i in range(p + 1):
            f[i] = 0.0
        f[p] = 1.0
        Ev = E[:, :n_act]
        nnls_small(Ev, f, x[:n_act], passive[:n_act], cols, z, Q, rhs, resid, wdual[:n_act], 3 * (n_act + p + 1))
        if not (abs(resid[p]) > 1e-14):
            return False, rnd  # constraints incompatible
        # u = -resid[:p] / resid[p]; beta = beta0 + L⁻ᵀ u
        u = ubuf[:p]
        for i in range(p):
            u[i] = -resid[i] / resid[p]
        for i in range(p - 1, -1, -1):
            s = u[i]
            for k in range(i + 1, p):
                s -= L[k, i] * u[k]
            u[i] = s / L[i, i]
        for a in range(p):
            beta[a] = beta0[a] + u[a]


# ---------------------------------------------------------------------------------------------
# Batch drivers
# ---------------------------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _loglinear_batch(XT, M, index, scale, Xpinv, Y, min_signal, n_iter, C0, d0, Cx, dx, nx, constrained, tol, atol,
                     B, ok, rounds):
    n, m = Y.shape
    p = XT.shape[0]
    nc0 = C0.shape[0]
    kx = Cx.shape[1]
    nblocks = (n + _BLOCK - 1) // _BLOCK
    for blk in prange(nblocks):
        y = np.empty(m)
        w = np.empty(m)
        mom = np.empty(M.shape[0])
        A = np.empty((p, p))
        g = np.empty(p)
        L = np.zeros((p, p))
        beta = np.empty(p)
        ka = max(nc0 + kx, 1)  # the working set may hold every constraint
        nact = np.empty(ka, dtype=np.int64)
        G = np.empty((p, ka))
        E = np.empty((p + 1, ka))
        f = np.empty(p + 1)
        x = np.empty(ka)
        passive = np.empty(ka, dtype=np.bool_)
        cols = np.empty(ka, dtype=np.int64)
        z = np.empty(ka)
        Q = np.empty((p + 1, ka))
        rhs = np.empty(p + 1)
        resid = np.empty(p + 1)
        wdual = np.empty(ka)
        ubuf = np.empty(2 * p)
        Cb = np.empty((nc0 + kx, p))
        db = np.zeros(nc0 + kx)
        cval = np.empty(max(nc0 + kx, 1))
        act = np.zeros(max(nc0 + kx, 1), dtype=np.bool_)
        for c in range(nc0):
            for a in range(p):
                Cb[c, a] = C0[c, a]
            db[c] = d0[c]
        for v in range(blk * _BLOCK, min(n, (blk + 1) * _BLOCK)):
            good = log_signal(Y[v], min_signal, y)
            if good:
                if n_iter > 0 or constrained:
                    good = wls_voxel(XT, M, index, scale, Xpinv, y, n_iter, beta, w, A, g, L, mom)
                else:
                    ols_voxel(Xpinv, y, beta)
            r = 0
            if good and constrained:
                if n_iter == 0:
                    for i in range(m):
                        w[i] = 1.0
                    normal_equations(XT, M, index, scale, y, w, A, g, mom)
                nc = nc0 + nx[v]
                for c in range(nx[v]):
                    for a in range(p):
                        Cb[nc0 + c, a] = Cx[v, c, a]
                    db[nc0 + c] = dx[v, c]
                for c in range(nc):
                    act[c] = False
                good, r = constrained_voxel(Cb[:nc], db[:nc], A, L, beta, cval, act, nact, G, E, f, x, passive, cols, z,
                                            Q, rhs, resid, wdual, ubuf, tol, atol)
            ok[v] = good
            rounds[v] = r
            for a in range(p):
                B[v, a] = beta[a] if good else np.nan


def solve_loglinear(X, signals, *, method: str = "wls", n_iter: int = 1, min_signal: float = MIN_SIGNAL,
                    constraints=None, voxel_constraints=None, tol: float = 1e-10,
                    atol: float = 1e-12):
    """Fit ``log S = X β`` in many voxels.

    Parameters
    ----------
    X : ndarray, shape (n_measurements, n_coefficients)
        Design matrix shared by every voxel (full column rank).
    signals : ndarray, shape (n_voxels, n_measurements)
        Measured signals (any positive unit); values below ``min_signal`` are raised to it.
    method : {"wls", "ols"}
        ``wls``: weights = squared predicted signal, ``n_iter`` reweightings from the OLS start
        (Veraart 2013; ``n_iter=1`` is dipy's WLS). ``ols``: ordinary least squares.
    n_iter : int
        Reweightings for ``wls`` (ignored for ``ols``).
    min_signal : float
        Floor applied before the log (default 1e-4, dipy's ``MIN_POSITIVE_SIGNAL``).
    constraints : tuple (C, d), optional
        Linear inequalities ``C β >= d`` (C: (n_constraints, n_coefficients), d: (n_constraints,))
        enforced exactly on the (weighted) least-squares solution.
    voxel_constraints : tuple (Cx, dx, nx), optional
        Extra constraints ``Cx[v] β >= dx[v]`` for each voxel: ``Cx`` (n_voxels, k, n_coefficients),
        ``dx`` (n_voxels, k), of which the first ``nx[v]`` rows apply to voxel ``v``.
    tol, atol : float
        A constraint counts as violated when ``c_kᵀβ − d_k < −(tol · Σ_a |c_ka β_a| + atol)``.

    Returns
    -------
    beta : ndarray, shape (n_voxels, n_coefficients)
        Coefficients; NaN where the voxel failed (non-finite or all non-positive signal,
        singular weighted system, incompatible constraints).
    ok : ndarray of bool, shape (n_voxels,)
    rounds : ndarray of int32, shape (n_voxels,)
        Constraint rounds used (0 when the unconstrained solution was feasible).

    Raises
    ------
    ValueError
        Unknown method, or shapes that do not agree.
    """
    if method not in ("wls", "ols"):
        raise ValueError(f"method must be 'wls' or 'ols', got {method!r}")
    X = np.ascontiguousarray(X, dtype=np.float64)
    Y = np.ascontiguousarray(signals, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or Y.shape[1] != X.shape[0]:
        raise ValueError(f"signals {Y.shape} do not match the design matrix {X.shape}")
    p = X.shape[1]
    if constraints is None:
        C, d, use_c = np.zeros((0, p)), np.zeros(0), False
    else:
        C = np.ascontiguousarray(constraints[0], dtype=np.float64)
        d = np.ascontiguousarray(constraints[1], dtype=np.float64)
        if C.ndim != 2 or C.shape[1] != p or d.shape != (C.shape[0],):
            raise ValueError("constraints must be (C (k, n_coefficients), d (k,))")
        use_c = True
    if voxel_constraints is None:
        Cx, dx = np.zeros((Y.shape[0], 0, p)), np.zeros((Y.shape[0], 0))
        nx = np.zeros(Y.shape[0], dtype=np.int64)
    else:
        Cx = np.ascontiguousarray(voxel_constraints[0], dtype=np.float64)
        dx = np.ascontiguousarray(voxel_constraints[1], dtype=np.float64)
        nx = np.ascontiguousarray(voxel_constraints[2], dtype=np.int64)
        if (Cx.ndim != 3 or Cx.shape[0] != Y.shape[0] or Cx.shape[2] != p or dx.shape != Cx.shape[:2]
                or nx.shape != (Y.shape[0],) or np.any(nx > Cx.shape[1])):
            raise ValueError("voxel_constraints must be (Cx (n_voxels, k, n_coefficients), dx (n_voxels, k), "
                             "nx (n_voxels,) <= k)")
        use_c = True
    B = np.empty((Y.shape[0], p))
    ok = np.empty(Y.shape[0], dtype=np.bool_)
    rounds = np.empty(Y.shape[0], dtype=np.int32)
    if Y.shape[0]:
        M, index, scale = weight_moments(X)
        _loglinear_batch(np.ascontiguousarray(X.T), M, index, scale, np.linalg.pinv(X), Y, float(min_signal),
                         int(n_iter) if method == "wls" else 0, C, d, Cx, dx, nx, use_c, float(tol), float(atol), B, ok, rounds)
    return B, ok, rounds
