"""Cramér–Rao lower bounds of any declared signal model, per voxel, in Numba.

The CRLB of parameter ``a`` is ``sqrt([F⁻¹]_aa)``: the smallest standard deviation an unbiased
estimator of ``a`` can have for this acquisition and noise level (Kay, *Fundamentals of Statistical
Signal Processing: Estimation Theory*, 1993, ch. 3). The Fisher information ``F`` of independent
measurements ``i`` with model signal ``A_i(θ)`` and Jacobian ``J = ∂A/∂θ`` is

* Gaussian noise of standard deviation σ: ``F = JᵀJ / σ²``;
* Rician noise of scale σ (magnitude of a complex signal with Gaussian noise σ in both channels):
  ``F = Jᵀ diag(g(A_i/σ)) J / σ²`` with ``g(a) = E[x² (I₁(ax)/I₀(ax))²] − a²`` for
  ``x ~ Rice(a, 1)``: the Fisher information of one Rician measurement about its amplitude
  (Karlsen, Verhagen & Bovée, MRM 1999;41:614, eq. 12; Sijbers & den Dekker, MRM 2004;51:586).
  ``g`` rises from 0 at ``a = 0`` (no information) to 1 (the Gaussian value) at high SNR.

The expectation in ``g`` has no closed form; it is computed by quadrature once (:func:`rician_factor`,
trapezoid rule on 801 points over ``a ± 14``, Bessel functions from :mod:`scipy.special`), tabulated for
``0 ≤ a ≤`` :data:`A_MAX` every :data:`A_STEP` (as ``g(a)(1 + a²)/a²``, smooth and near 1) and read in
the kernel by 4-point Lagrange interpolation (relative error below 1e-8); above :data:`A_MAX` the
asymptotic series ``1 − 1/(2a²) − 1/(4a⁴)`` is used
(error below 1e-9 there).

The kernel (:func:`crlb`) evaluates each voxel's Jacobian through the model's declared
``signal_jacobian`` kernel (the one the least-squares engine uses), forms ``F`` with Jacobi scaling,
inverts it by Cholesky and writes ``σ · sqrt(diag((JᵀWJ)⁻¹))``. Voxels are processed in parallel
blocks; each block allocates its work arrays once. A Fisher matrix that is singular at the
fitted values (a parameter the data do not determine there, e.g. IVIM D* where f = 0), a
non-finite parameter or a non-positive σ gives NaN.
"""

from __future__ import annotations

import numpy as np

from qmri.fitting.linalg import cholesky_solve
from qmri.fitting.lm import BLOCK, signal_jacobian_type
from qmri.jit import njit, prange

#: Noise models of :func:`crlb` (``--noise``).
NOISE_MODELS = ("gaussian", "rician")
#: Largest amplitude-to-σ ratio of the tabulated Rician factor (the asymptotic series above).
A_MAX = 50.0
#: Spacing of the tabulated Rician factor.
A_STEP = 0.01

_TABLE: np.ndarray | None = None


def rician_factor(a) -> np.ndarray:
    """``g(a)``: Fisher information of one Rician measurement about its amplitude, times σ².

    Parameters
    ----------
    a : array_like
        Amplitude over σ (>= 0).

    Returns
    -------
    ndarray
        ``E[x² R(ax)²] − a²`` for ``x ~ Rice(a, 1)``, ``R = I₁/I₀`` (Karlsen et al., MRM 1999;41:614),
        by the trapezoid rule over ``x ∈ [max(0, a − 14), a + 14]`` (801 points; the integrand
        vanishes like ``x⁵`` at 0 and like ``exp(−(x − a)²/2)`` in the tails).
    """
    from scipy.special import i0e, i1e

    a = np.atleast_1d(np.asarray(a, dtype=np.float64))
    out = np.empty(a.shape)
    for s in range(0, a.size, 512):
        aa = a.ravel()[s:s + 512, None]
        lo = np.maximum(0.0, aa - 14.0)
        x = lo + (aa + 14.0 - lo) * np.linspace(0.0, 1.0, 801)[None, :]
        z = aa * x
        i0 = i0e(z)
        ratio = i1e(z) / i0
        pdf = x * np.exp(-0.5 * (x - aa) ** 2) * i0  # Rice(a, 1) density with I0 scaled by exp(-ax)
        out.ravel()[s:s + 512] = np.trapezoid(x * x * ratio * ratio * pdf, x, axis=1) - aa[:, 0] ** 2
    return out


def rician_table() -> np.ndarray:
    """``q(a) = g(a) (1 + a²) / a²`` (:func:`rician_factor`; ``q(0) = 1``) on ``0, A_STEP, ..., A_MAX``
    (+ 2 points for the interpolation), computed once. ``q`` is smooth and near 1 everywhere, so
    interpolating it keeps the relative error of ``g`` uniform (``g ≈ a²`` near 0)."""
    global _TABLE
    if _TABLE is None:
        a = np.arange(int(round(A_MAX / A_STEP)) + 3) * A_STEP
        with np.errstate(divide="ignore", invalid="ignore"):
            q = rician_factor(a) * (1.0 + a * a) / (a * a)
        q[0] = 1.0
        _TABLE = q
    return _TABLE


@njit(cache=True)
def _rician_g(a, table, step, a_max):
    a2 = a * a
    if a >= a_max:
        return 1.0 - 0.5 / a2 - 0.25 / (a2 * a2)
    t = a / step
    k = int(t)
    if k < 1:
        k = 1
    u = t - k  # nodes k-1, k, k+1, k+2 at u = -1, 0, 1, 2
    y0, y1, y2, y3 = table[k - 1], table[k], table[k + 1], table[k + 2]
    q = (-u * (u - 1.0) * (u - 2.0) * y0 / 6.0 + (u + 1.0) * (u - 1.0) * (u - 2.0) * y1 / 2.0
         - (u + 1.0) * u * (u - 2.0) * y2 / 2.0 + (u + 1.0) * u * (u - 1.0) * y3 / 6.0)
    return q * a2 / (1.0 + a2)


def _crlb_batch_type(types):
    a1, a2 = types.float64[::1], types.float64[:, ::1]
    sj = types.FunctionType(signal_jacobian_type(types))
    return types.void(sj, a2, a2, a2, a1, types.int64, types.boolean, a1, types.float64, types.float64, a2)


@njit(signature=_crlb_batch_type, parallel=True, cache=True)
def _crlb_batch(sj_fn, acq, C, P, sigma, m, rician, table, step, a_max, out):
    n, npar = P.shape
    nblocks = (n + BLOCK - 1) // BLOCK
    for blk in prange(nblocks):
        f = np.empty(m)
        J = np.empty((m, npar))
        w = np.empty(m)
        A = np.empty((npar, npar))
        M = np.empty((npar, npar))
        L = np.zeros((npar, npar))
        d = np.empty(npar)
        e = np.empty(npar)
        z = np.empty(npar)
        stop = min(n, (blk + 1) * BLOCK)
        for v in range(blk * BLOCK, stop):
            s = sigma[v]
            ok = s > 0.0 and np.isfinite(s)
            for a in range(npar):
                if not np.isfinite(P[v, a]):
                    ok = False
            if ok:
                sj_fn(P[v], acq, C[v], f, J)
                for i in range(m):
                    w[i] = _rician_g(abs(f[i]) / s, table, step, a_max) if rician else 1.0
                # Fisher information times sigma^2, Jacobi-scaled before the Cholesky inverse
                for a in range(npar):
                    for b in range(a, npar):
                        t = 0.0
                        for i in range(m):
                            t += w[i] * J[i, a] * J[i, b]
                        A[a, b] = t
                        A[b, a] = t
                for a in range(npar):
                    if A[a, a] > 0.0 and np.isfinite(A[a, a]):
                        d[a] = np.sqrt(A[a, a])
                    else:
                        ok = False
            if not ok:
                for a in range(npar):
                    out[v, a] = np.nan
                continue
            for a in range(npar):
                for b in range(npar):
                    M[a, b] = A[a, b] / (d[a] * d[b])
            for a in range(npar):
                for b in range(npar):
                    e[b] = 0.0
                e[a] = 1.0
                if cholesky_solve(M, e, z, L, npar) and z[a] > 0.0:
                    out[v, a] = s * np.sqrt(z[a]) / d[a]
                else:
                    out[v, a] = np.nan


def crlb(model, acq, params, sigma, *, covariates=None, noise: str = "gaussian") -> np.ndarray:
    """Cramér–Rao lower bound of the standard deviation of every parameter, per voxel.

    Parameters
    ----------
    model : qmri.models.base.SignalModel
        The declaration (its ``signal_jacobian`` kernel gives the Jacobian).
    acq : ndarray, 2-D
        Acquisition array, as for :func:`qmri.fitting.fit_lm`.
    params : ndarray, shape (n_voxels, n_params)
        Parameter values at which the bound is evaluated (e.g. the fitted values), model order and units.
    sigma : float or ndarray, shape (n_voxels,)
        Noise level in the units of the signal: the standard deviation of Gaussian noise, or the
        scale of Rician noise (the standard deviation of each complex channel).
    covariates : ndarray, shape (n_voxels, n_covariates), optional
    noise : {"gaussian", "rician"}

    Returns
    -------
    ndarray, shape (n_voxels, n_params)
        CRLB of the standard deviation, in each parameter's unit; NaN where the Fisher information
        is singular, a parameter is not finite or σ is not positive.

    Raises
    ------
    ValueError
        Unknown noise model, or shapes that do not agree.
    """
    if noise not in NOISE_MODELS:
        raise ValueError(f"noise must be one of {', '.join(NOISE_MODELS)}, got {noise!r}")
    P = np.ascontiguousarray(np.atleast_2d(params), dtype=np.float64)
    n, npar = P.shape
    if npar != model.n_params:
        raise ValueError(f"params must have {model.n_params} columns, got {npar}")
    acq = np.ascontiguousarray(acq, dtype=np.float64)
    s = np.array(np.broadcast_to(np.asarray(sigma, dtype=np.float64), (n,)))
    C = model.covariate_array(covariates, n)
    m = model.n_measurements(acq)
    out = np.full((n, npar), np.nan)
    if n and m:
        table = rician_table() if noise == "rician" else np.zeros(4)
        _crlb_batch(model.signal_and_jacobian, acq, C, P, s, int(m), noise == "rician", table, A_STEP, A_MAX, out)
    return out
