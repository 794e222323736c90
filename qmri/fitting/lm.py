"""Batched, bounded Levenberg–Marquardt least squares in Numba, for any declared signal model.

The engine knows nothing about a particular model: it receives the model's Numba kernel that
evaluates signal and Jacobian together (``signal_and_jacobian(p, acq, cov, out, J)``, see
:class:`qmri.models.base.SignalModel`), the acquisition array ``acq`` shared by every voxel, the
per-voxel covariates ``cov`` (e.g. a B1 map; a ``(n_voxels, k)`` array, ``k`` may be 0) and a
``(n_voxels, n_measurements)`` array of signals. Voxels are fitted in parallel (``prange`` over
blocks of voxels); each thread allocates its small work arrays once per block, never per
iteration.

Algorithm (per voxel)
---------------------
Levenberg–Marquardt with Marquardt's diagonal scaling (Marquardt 1963, doi:10.1137/0111030;
Moré 1978, "The Levenberg–Marquardt algorithm: implementation and theory") and Nielsen's damping
update (Madsen, Nielsen & Tingleff 2004, IMM DTU lecture notes, eq. 2.21): the normal equations
``(JᵀWJ + λ diag(JᵀWJ)) δ = -JᵀW r`` are solved by Cholesky after Jacobi scaling. Bounds are always
honoured: a parameter sitting on a bound whose gradient points outwards is frozen for that
iteration (an active-set projection, as in bounded LM codes such as Gpufit's), and every trial
point is clipped into the box. A step is accepted only if it lowers the weighted cost.

Stopping: relative cost decrease below ``ftol``, every parameter step below
``xtol·(|p| + xtol)``, or the scaled gradient below ``gtol·‖r‖`` gives ``converged``; no decrease
possible at any damping also counts as converged (a local minimum within the box).
``max_iter`` reached gives ``max-iter``. Non-finite or all-zero signals, or a non-finite cost at
the start, give ``failed`` with NaN parameters.

Standard errors (optional) are the square roots of the diagonal of ``s² (JᵀWJ)⁻¹`` at the
solution, with ``s² = Σ w r² / (m - p)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qmri.fitting.linalg import cholesky_solve, fit_quality
from qmri.fitting.result import STATUS_CONVERGED, STATUS_FAILED, STATUS_MAX_ITER, FitResult
from qmri.jit import FASTMATH, njit, prange

#: Voxels per parallel work unit: each thread allocates its work arrays once per block.
BLOCK = 128


def signal_jacobian_type(types):
    """Numba type of a combined signal-and-Jacobian kernel ``(p, acq, cov, out, J) -> None``.

    The engine receives the kernel as a first-class function of this type, so the engine itself
    is compiled once, for every model, and cached on disk (no recompilation per model or process).
    All arrays are float64 and C-contiguous: ``p`` (n_params,), ``acq`` (m, k), ``cov`` (n_cov,),
    ``out`` (m,), ``J`` (m, n_params), m the number of measurements (``model.n_measurements(acq)``).
    """
    a1, a2 = types.float64[::1], types.float64[:, ::1]
    return types.void(a1, a2, a1, a1, a2)


@njit(fastmath=FASTMATH)
def _normal_matrix(w, J, A):
    """``A = Jᵀ diag(w) J`` (symmetric, both triangles filled)."""
    m, npar = J.shape
    for a in range(npar):
        for b in range(a, npar):
            s = 0.0
            for i in range(m):
                s += w[i] * J[i, a] * J[i, b]
            A[a, b] = s
            A[b, a] = s


@njit(fastmath=FASTMATH)
def _weighted_cost_jac(sj_fn, p, acq, cov, y, w, f, J):
    sj_fn(p, acq, cov, f, J)
    c = 0.0
    for i in range(y.shape[0]):
        r = f[i] - y[i]
        c += w[i] * r * r
    return c


@njit(fastmath=FASTMATH)
def _lm_voxel(sj_fn, acq, cov, y, w, p0, lo, hi, max_iter, xtol, ftol, gtol,
              p, pt, f, ft, J, Jt, A, g, d, M, rhs, z, L, free):
    m = y.shape[0]
    npar = p0.shape[0]
    nonzero = False
    for i in range(m):
        if not np.isfinite(y[i]):
            return STATUS_FAILED, 0, np.inf
        if y[i] != 0.0:
            nonzero = True
    if not nonzero:
        return STATUS_FAILED, 0, np.inf
    for a in range(npar):
        v = p0[a]
        if not np.isfinite(v):
            if np.isfinite(lo[a]) and np.isfinite(hi[a]):
                v = 0.5 * (lo[a] + hi[a])
            elif np.isfinite(lo[a]):
                v = lo[a]
            elif np.isfinite(hi[a]):
                v = hi[a]
            else:
                v = 0.0
        p[a] = min(max(v, lo[a]), hi[a])
    cost = _weighted_cost_jac(sj_fn, p, acq, cov, y, w, f, J)
    if not np.isfinite(cost):
        return STATUS_FAILED, 0, np.inf
    lam = 1e-3
    nu = 2.0
    status = STATUS_MAX_ITER
    it = 0
    while it < max_iter:
        it += 1
        if cost == 0.0:
            status = STATUS_CONVERGED
            break
        for a in range(npar):
            s = 0.0
            for i in range(m):
                s += w[i] * J[i, a] * (f[i] - y[i])
            g[a] = s
        _normal_matrix(w, J, A)
        gmax = 0.0
        for a in range(npar):
            fr = True
            if p[a] <= lo[a] and g[a] > 0.0:
                fr = False
            if p[a] >= hi[a] and g[a] < 0.0:
                fr = False
            free[a] = fr
            d[a] = np.sqrt(A[a, a]) if A[a, a] > 0.0 else 1.0
            if fr:
                ga = abs(g[a]) / d[a]
                if ga > gmax:
                    gmax = ga
        if not np.isfinite(gmax):
            status = STATUS_FAILED
            break
        if gmax <= gtol * np.sqrt(cost):
            status = STATUS_CONVERGED
            break
        accepted = False
        small_step = False
        dcost = 0.0
        while lam < 1e12:
            for a in range(npar):
                for b in range(npar):
                    if free[a] and free[b]:
                        M[a, b] = A[a, b] / (d[a] * d[b])
                    else:
                        M[a, b] = 0.0
                if free[a]:
                    M[a, a] += lam
                    rhs[a] = -g[a] / d[a]
                else:
                    M[a, a] = 1.0
                    rhs[a] = 0.0
            if not cholesky_solve(M, rhs, z, L, npar):
                lam *= nu
                nu *= 2.0
                continue
            small_step = True
            for a in range(npar):
                v = p[a] + z[a] / d[a]
                v = min(max(v, lo[a]), hi[a])
                pt[a] = v
                if abs(v - p[a]) > xtol * (abs(p[a]) + xtol):
                    small_step = False
            ct = _weighted_cost_jac(sj_fn, pt, acq, cov, y, w, ft, Jt)
            if np.isfinite(ct) and ct < cost:
                dcost = cost - ct
                # gain ratio: actual over predicted decrease (predicted = zᵀrhs + λ|z|²)
                pred = 0.0
                for a in range(npar):
                    if free[a]:
                        pred += z[a] * rhs[a] + lam * z[a] * z[a]
                rho = dcost / pred if pred > 0.0 else 0.0
                for a in range(npar):
                    p[a] = pt[a]
                for i in range(m):
                    f[i] = ft[i]
                    for a in range(npar):
                        J[i, a] = Jt[i, a]
                cost = ct
                # Nielsen's damping update (Madsen, Nielsen & Tingleff 2004, "Methods for
                # non-linear least squares problems", eq. 2.21)
                t = 2.0 * rho - 1.0
                lam = max(lam * max(1.0 / 3.0, 1.0 - t * t * t), 1e-12)
                nu = 2.0
                accepted = True
                break
            if small_step:
                break
            lam *= nu
            nu *= 2.0
        if not accepted:
            status = STATUS_CONVERGED
            break
        if dcost <= ftol * (cost + dcost) or small_step:
            status = STATUS_CONVERGED
            break
    return status, it, cost


@njit
def _standard_errors(w, p, cost, m, J, A, L, e, z, out):
    """SE from the Jacobian ``J`` already evaluated at the solution ``p``."""
    npar = p.shape[0]
    if m <= npar:
        for a in range(npar):
            out[a] = np.nan
        return
    _normal_matrix(w, J, A)
    s2 = cost / (m - npar)
    for a in range(npar):
        for b in range(npar):
            e[b] = 0.0
        e[a] = 1.0
        if cholesky_solve(A, e, z, L, npar) and z[a] >= 0.0:
            out[a] = np.sqrt(s2 * z[a])
        else:
            out[a] = np.nan


def _lm_batch_type(types):
    a1, a2 = types.float64[::1], types.float64[:, ::1]
    sj = types.FunctionType(signal_jacobian_type(types))
    return types.void(sj, a2, a2, a2, a1, a2, a1, a1, types.int64, types.float64, types.float64,
                      types.float64, types.boolean, a2, types.int8[::1], types.int32[::1], a1, a1, a2)


@njit(signature=_lm_batch_type, parallel=True, cache=True)
def _lm_batch(sj_fn, acq, C, Y, w, P0, lo, hi, max_iter, xtol, ftol, gtol, want_se,
              P, status, n_iter, rmse, r2, SE):
    n, m = Y.shape
    npar = P0.shape[1]
    nblocks = (n + BLOCK - 1) // BLOCK
    for blk in prange(nblocks):
        p = np.empty(npar)
        pt = np.empty(npar)
        f = np.empty(m)
        ft = np.empty(m)
        J = np.empty((m, npar))
        Jt = np.empty((m, npar))
        A = np.empty((npar, npar))
        g = np.empty(npar)
        d = np.empty(npar)
        M = np.empty((npar, npar))
        rhs = np.empty(npar)
        z = np.empty(npar)
        L = np.zeros((npar, npar))
        e = np.empty(npar)
        free = np.empty(npar, dtype=np.bool_)
        stop = min(n, (blk + 1) * BLOCK)
        for v in range(blk * BLOCK, stop):
            y = Y[v]
            st, it, cost = _lm_voxel(sj_fn, acq, C[v], y, w, P0[v], lo, hi, max_iter, xtol,
                                     ftol, gtol, p, pt, f, ft, J, Jt, A, g, d, M, rhs, z, L, free)
            status[v] = st
            n_iter[v] = it
            if st == STATUS_FAILED:
                for a in range(npar):
                    P[v, a] = np.nan
                    SE[v, a] = np.nan
                rmse[v] = np.nan
                r2[v] = np.nan
                continue
            for a in range(npar):
                P[v, a] = p[a]
            rmse[v], r2[v] = fit_quality(y, f)
            if want_se:
                _standard_errors(w, p, cost, m, J, A, L, e, z, SE[v])
            else:
                for a in range(npar):
                    SE[v, a] = np.nan


@dataclass(frozen=True)
class LMOptions:
    """Stopping rules of the Levenberg–Marquardt engine.

    Attributes
    ----------
    max_iter : int
        Iteration limit per voxel (status ``max-iter`` when reached).
    xtol : float
        Converged when every parameter step is below ``xtol·(|p| + xtol)``.
    ftol : float
        Converged when an accepted step lowers the cost by less than ``ftol`` relative. With
        ``m`` measurements, a relative cost change ``ε`` corresponds to parameter changes of about
        ``sqrt(m·ε)`` standard errors, so the default 1e-6 stops when steps are below ~0.5% of a
        standard error for m ≤ 25: far below the noise, at a fraction of the iterations.
    gtol : float
        Converged when the largest scaled gradient component is below ``gtol·‖r‖``.
    compute_se : bool
        Also return standard errors from the Jacobian at the solution.
    """

    max_iter: int = 100
    xtol: float = 1e-7
    ftol: float = 1e-6
    gtol: float = 1e-10
    compute_se: bool = False


def fit_lm(model, acq, signals, p0, *, covariates=None, lower=None, upper=None, weights=None,
           options=LMOptions()):
    """Fit a declared signal model to many voxels by bounded Levenberg–Marquardt.

    Parameters
    ----------
    model : qmri.models.base.SignalModel
        The model declaration (Numba signal and Jacobian kernels, parameter names, default bounds).
    acq : ndarray, 2-D
        Acquisition array shared by every voxel, in the layout the model documents (one row per
        measurement unless the model declares ``measurements``: see :mod:`qmri.models.base`).
    signals : ndarray, shape (n_voxels, n_measurements)
        Measured signals.
    p0 : ndarray, shape (n_voxels, n_params) or (n_params,)
        Starting values, in the model's parameter order and units (clipped into the bounds).
    covariates : ndarray, shape (n_voxels, n_covariates), optional
        Per-voxel inputs of the model (its declared ``covariates``, in order, e.g. a relative B1),
        passed to the kernel with each voxel's signals. Default: the declared default values.
    lower, upper : array_like, shape (n_params,), optional
        Bounds; default the model's declared bounds. ``±inf`` means unbounded.
    weights : array_like, shape (n_measurements,), optional
        Non-negative weights of the squared residuals; default all ones.
    options : LMOptions
        Stopping rules and whether to compute standard errors.

    Returns
    -------
    FitResult
        Parameters keyed by the model's parameter names, ``status`` (0 converged, 1 max-iter,
        2 failed), ``n_iter``, ``rmse``, ``r2`` and, if requested, standard errors ``se``.

    Raises
    ------
    ValueError
        If the shapes of ``signals``, ``p0``, covariates, bounds or weights do not agree, or lower > upper.
    """
    Y = np.ascontiguousarray(signals, dtype=np.float64)
    if Y.ndim != 2:
        raise ValueError(f"signals must be 2-D (n_voxels, n_measurements), got shape {Y.shape}")
    n, m = Y.shape
    npar = model.n_params
    acq = np.ascontiguousarray(acq, dtype=np.float64)
    if acq.ndim != 2 or model.n_measurements(acq) != m:
        raise ValueError(f"acq of shape {acq.shape} describes {model.n_measurements(acq) if acq.ndim == 2 else '?'} "
                         f"measurements, the signals have {m}")
    P0 = np.asarray(p0, dtype=np.float64)
    if P0.ndim == 1:
        P0 = np.broadcast_to(P0, (n, npar))
    P0 = np.ascontiguousarray(P0)
    if P0.shape != (n, npar):
        raise ValueError(f"p0 must have shape ({n}, {npar}), got {P0.shape}")
    lo = np.ascontiguousarray(model.lower if lower is None else lower, dtype=np.float64)
    hi = np.ascontiguousarray(model.upper if upper is None else upper, dtype=np.float64)
    if lo.shape != (npar,) or hi.shape != (npar,) or np.any(lo > hi):
        raise ValueError(f"bounds must have shape ({npar},) with lower <= upper")
    C = model.covariate_array(covariates, n)
    w = np.ones(m) if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    if w.shape != (m,) or np.any(~np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be {m} finite non-negative numbers")
    P = np.empty((n, npar))
    SE = np.empty((n, npar))
    status = np.empty(n, dtype=np.int8)
    n_iter = np.empty(n, dtype=np.int32)
    rmse = np.empty(n)
    r2 = np.empty(n)
    if n:
        _lm_batch(model.signal_and_jacobian, acq, C, Y, w, P0, lo, hi, int(options.max_iter),
                  float(options.xtol), float(options.ftol), float(options.gtol),
                  bool(options.compute_se), P, status, n_iter, rmse, r2, SE)
    names = model.names
    return FitResult(
        params={name: P[:, j] for j, name in enumerate(names)},
        status=status,
        n_iter=n_iter,
        rmse=rmse,
        r2=r2,
        se={name: SE[:, j] for j, name in enumerate(names)} if options.compute_se else {},
    )
