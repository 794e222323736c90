"""IVIM: the bi-exponential intravoxel incoherent motion model.

Signal (Le Bihan et al., Radiology 1988;168:497, doi:10.1148/radiology.168.2.3393671)::

    S(b) = S0 · ( f · exp(-b · D*) + (1 - f) · exp(-b · D) )

with b in s/mm², D and D* (file label ``Dstar``) in mm²/s and the perfusion fraction f in 0–1.
Names and default bounds follow the OSIPI TF2.4 IVIM code collection (f 0–1, D 0–0.005 mm²/s,
D* 0.005–0.2 mm²/s, segmentation threshold 200 s/mm²).

Methods
-------
``segmented``
    The consensus method (Sigmund et al., "Towards clinical translation of IVIM MRI: acquisition
    and analysis consensus recommendations", as implemented by OSIPI's TF reference fit):
    D and the intercept from an iteratively weighted log-linear fit over b ≥ threshold (weights
    = predicted signal², Veraart et al. 2013, doi:10.1016/j.neuroimage.2013.05.028);
    f = 1 - intercept / S(b_min); D* by a one-parameter bounded fit with S0, f and D fixed.
``lsq`` (default)
    Full bounded Levenberg–Marquardt fit of (S0, f, D, D*) started from the segmented result.
    Where D* ends at (within 5 % of) its upper bound, the perfusion signal has gone before the
    first non-zero b-value: the data fix f but not D*, and the cost is flat in D* up to the bound
    (near-equal minima). There D* is reported as the lower edge of that flat stretch: the smallest
    value down to which the cost (S0 and f solved exactly for it, D kept) stays within
    :data:`PLATEAU_TOL` σ² of the minimum, σ² the residual variance SSR/(m − 4): indistinguishable
    by the data, and the least extreme of them (:func:`dstar_plateau`). Its standard error, if asked for, is NaN there.

Signals are normalised per voxel by the mean signal at the lowest b-value before fitting, so the
S0 bounds are relative to that signal; S0 is scaled back in the output.
"""

from __future__ import annotations

import numpy as np

from qmri.errors import QMRIInputError
from qmri.fitting.linalg import quality_from_ssr
from qmri.fitting.lm import LMOptions
from qmri.fitting.result import STATUS_CONVERGED, STATUS_FAILED, FitResult
from qmri.jit import FASTMATH, njit, prange
from qmri.models.base import Parameter, SignalModel, register
from qmri.models.diffusion.acquisition import (DiffusionDemo, DiffusionModel, DiffusionNetwork, b0_threshold_option,
                                               check_b0_threshold, check_bvals)
from qmri.models.facets import CommandText
from qmri.fitting.net.method import DNN
from qmri.models.methods import LeastSquares, Method, Validation, table
from qmri.options import Option

#: Default segmentation threshold (s/mm²), OSIPI / consensus.
DEFAULT_THRESHOLD = 200.0
#: Cost increase (in units of the residual variance) within which a smaller D* is taken as
#: indistinguishable from a least-squares D* at its upper bound (``lsq``).
PLATEAU_TOL = 0.1
#: Points of the log-spaced D* grid (lower bound to the fitted D*) walked down for that smaller D*.
PLATEAU_GRID = 24

#: Organ presets of the initial guess (f, D* mm²/s, D mm²/s), from the OSIPI TF2.4 body-part
#: defaults (src/wrappers/ivim_body_part_defaults.py), which follow the Sigmund consensus.
PRESETS = {
    "brain": {"f": 0.0764, "Dstar": 0.01088, "D": 0.00083},
    "kidney": {"f": 0.1888, "Dstar": 0.04053, "D": 0.00189},
    "liver": {"f": 0.2305, "Dstar": 0.07002, "D": 0.00109},
    "muscle": {"f": 0.1034, "Dstar": 0.03088, "D": 0.00147},
}


@njit(cache=True)
def ivim_signal(p, acq, cov, out):
    """IVIM signal; ``p = (S0, f, D, Dstar)``, ``acq[:, 0]`` = b (s/mm²)."""
    S0, f, D, Ds = p[0], p[1], p[2], p[3]
    for i in range(acq.shape[0]):
        b = acq[i, 0]
        out[i] = S0 * (f * np.exp(-b * Ds) + (1.0 - f) * np.exp(-b * D))


@njit(cache=True)
def ivim_jacobian(p, acq, cov, J):
    """Analytic ∂S/∂(S0, f, D, Dstar), shape (n_b, 4)."""
    S0, f, D, Ds = p[0], p[1], p[2], p[3]
    for i in range(acq.shape[0]):
        b = acq[i, 0]
        e1 = np.exp(-b * Ds)
        e2 = np.exp(-b * D)
        J[i, 0] = f * e1 + (1.0 - f) * e2
        J[i, 1] = S0 * (e1 - e2)
        J[i, 2] = -b * S0 * (1.0 - f) * e2
        J[i, 3] = -b * S0 * f * e1


@njit(cache=True, fastmath=FASTMATH)
def ivim_signal_jacobian(p, acq, cov, out, J):
    """Signal and Jacobian in one pass (each exponential computed once)."""
    S0, f, D, Ds = p[0], p[1], p[2], p[3]
    for i in range(acq.shape[0]):
        b = acq[i, 0]
        e1 = np.exp(-b * Ds)
        e2 = np.exp(-b * D)
        s = f * e1 + (1.0 - f) * e2
        out[i] = S0 * s
        J[i, 0] = s
        J[i, 1] = S0 * (e1 - e2)
        J[i, 2] = -b * S0 * (1.0 - f) * e2
        J[i, 3] = -b * S0 * f * e1


def ivim_signal_torch(params, acq, cov=None):
    """IVIM signal in torch: ``params`` (N, 4) as (S0, f, D, Dstar), ``acq`` (n_b, 1) → (N, n_b)."""
    import torch

    b = acq[:, 0]
    S0, f, D, Ds = (params[:, j : j + 1] for j in range(4))
    return S0 * (f * torch.exp(-b * Ds) + (1.0 - f) * torch.exp(-b * D))


def _example_acquisition():
    return np.array([0, 10, 20, 30, 50, 80, 100, 150, 200, 400, 600, 800, 1000], float)[:, None]


IVIM_MODEL = register(SignalModel(
    name="ivim",
    parameters=(
        Parameter("S0", "a.u.", 0.5, 2.0, 1.0,
                  "signal at b=0; bounds relative to the mean signal at the lowest b-value"),
        Parameter("f", "", 0.0, 1.0, 0.1, "perfusion fraction"),
        Parameter("D", "mm2/s", 0.0, 0.005, 0.001, "tissue diffusion coefficient"),
        Parameter("Dstar", "mm2/s", 0.005, 0.2, 0.01, "pseudo-diffusion coefficient D*"),
    ),
    signal=ivim_signal,
    jacobian=ivim_jacobian,
    torch_signal=ivim_signal_torch,
    acquisition_doc="acq[:, 0]: b-values in s/mm2",
    example_acquisition=_example_acquisition,
    reference="Le Bihan et al., Radiology 1988;168:497 (doi:10.1148/radiology.168.2.3393671); OSIPI TF2.4 defaults",
    signal_jacobian=ivim_signal_jacobian,
))


# ---------------------------------------------------------------------------------------------
# Segmented (consensus) fit, one Numba kernel
# ---------------------------------------------------------------------------------------------
_DSTAR_GRID = 12
_START_GRID = 8  # grid points for the lsq start (LM refines D*)
_GOLDEN_ITERS = 14
_WLS_ITERS = 5


@njit(cache=True)
def _dstar_cost(x, b, y, f, e_d, m):
    c = 0.0
    for i in range(m):
        r = f * np.exp(-b[i] * x) + (1.0 - f) * e_d[i] - y[i]
        c += r * r
    return c


_BLOCK = 256  # voxels per parallel work unit (work arrays allocated once per block)


@njit(parallel=True, cache=True)
def _segmented_batch(b, Y, high, lo, hi, wls_iters, n_grid, golden_iters, kurtosis, P, status, rmse, r2):
    """Segmented IVIM on normalised signals Y (n, m); P gets (S0, f, D, D*) in normalised units, and K
    as a fifth column with ``kurtosis`` (the IVIM-kurtosis model, :mod:`qmri.models.diffusion.ivimk`).

    D (and K) and the intercept come from a log-linear fit over b >= threshold reweighted
    ``wls_iters`` times (with ``kurtosis``: quadratic in b, ``log S = c0 - b D + b² D² K / 6``);
    D* from a grid search refined by ``golden_iters`` golden-section steps (0: grid only, enough
    as a start for the full fit).
    """
    n, m = Y.shape
    nh = 0
    for i in range(m):
        if high[i]:
            nh += 1
    nblocks = (n + _BLOCK - 1) // _BLOCK
    for blk in prange(nblocks):
        zlog = np.empty(m)
        e_d = np.empty(m)
        for v in range(blk * _BLOCK, min(n, (blk + 1) * _BLOCK)):
            _segmented_voxel(b, Y[v], high, nh, lo, hi, wls_iters, n_grid, golden_iters, kurtosis, zlog, e_d, P[v],
                             status, rmse, r2, v)


@njit(cache=True)
def _loglinear_quadratic(b, zlog, high, wls_iters):
    """Weighted fit of ``log S = c0 + c1 u + c2 u²`` (u = b / 1000) over ``high``, reweighted
    ``wls_iters`` times by the squared predicted signal; returns (c0, c1, c2), NaN if singular."""
    m = b.shape[0]
    c0 = 0.0
    c1 = 0.0
    c2 = 0.0
    A = np.empty((3, 3))
    r = np.empty(3)
    for it in range(wls_iters + 1):
        A[:, :] = 0.0
        r[:] = 0.0
        for i in range(m):
            if high[i]:
                u = b[i] * 1e-3
                w = 1.0 if it == 0 else np.exp(2.0 * (c0 + c1 * u + c2 * u * u))
                x0, x1, x2 = 1.0, u, u * u
                A[0, 0] += w * x0 * x0
                A[0, 1] += w * x0 * x1
                A[0, 2] += w * x0 * x2
                A[1, 1] += w * x1 * x1
                A[1, 2] += w * x1 * x2
                A[2, 2] += w * x2 * x2
                r[0] += w * x0 * zlog[i]
                r[1] += w * x1 * zlog[i]
                r[2] += w * x2 * zlog[i]
        A[1, 0] = A[0, 1]
        A[2, 0] = A[0, 2]
        A[2, 1] = A[1, 2]
        det = (A[0, 0] * (A[1, 1] * A[2, 2] - A[1, 2] * A[2, 1]) - A[0, 1] * (A[1, 0] * A[2, 2] - A[1, 2] * A[2, 0])
               + A[0, 2] * (A[1, 0] * A[2, 1] - A[1, 1] * A[2, 0]))
        if not abs(det) > 1e-12 * abs(A[0, 0] * A[1, 1] * A[2, 2]):
            if it == 0:
                return np.nan, np.nan, np.nan
            break
        # Cramer's rule (3 x 3)
        d0 = (r[0] * (A[1, 1] * A[2, 2] - A[1, 2] * A[2, 1]) - A[0, 1] * (r[1] * A[2, 2] - A[1, 2] * r[2])
              + A[0, 2] * (r[1] * A[2, 1] - A[1, 1] * r[2]))
        d1 = (A[0, 0] * (r[1] * A[2, 2] - A[1, 2] * r[2]) - r[0] * (A[1, 0] * A[2, 2] - A[1, 2] * A[2, 0])
              + A[0, 2] * (A[1, 0] * r[2] - r[1] * A[2, 0]))
        d2 = (A[0, 0] * (A[1, 1] * r[2] - r[1] * A[2, 1]) - A[0, 1] * (A[1, 0] * r[2] - r[1] * A[2, 0])
              + r[0] * (A[1, 0] * A[2, 1] - A[1, 1] * A[2, 0]))
        c0 = d0 / det
        c1 = d1 / det
        c2 = d2 / det
    return c0, c1, c2


@njit(cache=True)
def _segmented_voxel(b, y, high, nh, lo, hi, wls_iters, n_grid, golden_iters, kurtosis, zlog, e_d, p, status, rmse,
                     r2, v):
    m = y.shape[0]
    ok = True
    for i in range(m):
        if not np.isfinite(y[i]):
            ok = False
    if not ok:
        status[v] = STATUS_FAILED
        for a in range(p.shape[0]):
            p[a] = np.nan
        rmse[v] = np.nan
        r2[v] = np.nan
        return
    # 1) iteratively weighted log-linear fit over b >= threshold (signal clipped at 0.01, as OSIPI)
    for i in range(m):
        if high[i]:
            zlog[i] = np.log(max(y[i], 0.01))
    slope = 0.0
    icpt = 0.0
    for it in range(wls_iters + 1):
        sw = 0.0
        sx = 0.0
        sy = 0.0
        sxx = 0.0
        sxy = 0.0
        for i in range(m):
            if high[i]:
                w = 1.0 if it == 0 else np.exp(2.0 * (icpt + slope * b[i]))
                sw += w
                sx += w * b[i]
                sy += w * zlog[i]
                sxx += w * b[i] * b[i]
                sxy += w * b[i] * zlog[i]
        det = sw * sxx - sx * sx
        if det <= 0.0:
            break
        slope = (sw * sxy - sx * sy) / det
        icpt = (sy - slope * sx) / sw
    K = 0.0
    if kurtosis:
        # log S = c0 - b D + b² D² K / 6 (Lu et al. 2012): D = -c1 / 1000, K = 6 c2 / c1² (u = b / 1000)
        c0, c1, c2 = _loglinear_quadratic(b, zlog, high, wls_iters)
        if np.isfinite(c0) and c1 < 0.0:
            icpt = c0
            slope = c1 * 1e-3
            K = min(max(6.0 * c2 / (c1 * c1), lo[4]), hi[4])
        else:  # no decay to take D and K from: the mono-exponential D, K at its lower bound
            K = lo[4]
    D = min(max(-slope, lo[2]), hi[2])
    f = min(max(1.0 - np.exp(icpt), lo[1]), hi[1])
    # 2) D* by grid search then golden section, S0 = 1, f, D (and K) fixed
    for i in range(m):
        e_d[i] = np.exp(-b[i] * D + b[i] * b[i] * D * D * K / 6.0)
    llo = np.log(lo[3])
    lhi = np.log(hi[3])
    step = (lhi - llo) / (n_grid - 1)
    best = 0
    bestc = np.inf
    for k in range(n_grid):
        c = _dstar_cost(np.exp(llo + k * step), b, y, f, e_d, m)
        if c < bestc:
            bestc = c
            best = k
    Ds = np.exp(llo + best * step)
    cs = bestc
    if golden_iters > 0:
        a_ = llo + max(best - 1, 0) * step
        c_ = llo + min(best + 1, n_grid - 1) * step
        gr = 0.6180339887498949
        x1 = c_ - gr * (c_ - a_)
        x2 = a_ + gr * (c_ - a_)
        f1 = _dstar_cost(np.exp(x1), b, y, f, e_d, m)
        f2 = _dstar_cost(np.exp(x2), b, y, f, e_d, m)
        for it in range(golden_iters):
            if f1 < f2:
                c_ = x2
                x2 = x1
                f2 = f1
                x1 = c_ - gr * (c_ - a_)
                f1 = _dstar_cost(np.exp(x1), b, y, f, e_d, m)
            else:
                a_ = x1
                x1 = x2
                f1 = f2
                x2 = a_ + gr * (c_ - a_)
                f2 = _dstar_cost(np.exp(x2), b, y, f, e_d, m)
        xs = 0.5 * (a_ + c_)
        cg = _dstar_cost(np.exp(xs), b, y, f, e_d, m)
        if cg < cs:
            Ds = np.exp(xs)
            cs = cg
    p[0] = min(max(1.0, lo[0]), hi[0])
    p[1] = f
    p[2] = D
    p[3] = min(max(Ds, lo[3]), hi[3])
    if kurtosis:
        p[4] = K
    status[v] = STATUS_CONVERGED
    rmse[v], r2[v] = quality_from_ssr(y, cs)
    if nh < 2 + kurtosis:
        status[v] = STATUS_FAILED


@njit(cache=True)
def _profile_cost(b, y, e2, g, lo, hi, out):
    """Cost at D* = g with S0 and f solved exactly (D fixed: ``e2`` = exp(-b D)); ``out`` gets (S0, f).
    Infinite where S0 or f falls outside its bounds."""
    m = y.shape[0]
    a11 = a12 = a22 = r1 = r2 = 0.0
    for i in range(m):
        e1 = np.exp(-b[i] * g)
        a11 += e1 * e1
        a12 += e1 * e2[i]
        a22 += e2[i] * e2[i]
        r1 += e1 * y[i]
        r2 += e2[i] * y[i]
    det = a11 * a22 - a12 * a12
    if not det > 0.0:
        return np.inf
    a = (a22 * r1 - a12 * r2) / det
    c = (a11 * r2 - a12 * r1) / det
    S0 = a + c
    if not (S0 > 0.0 and lo[0] <= S0 <= hi[0]):
        return np.inf
    f = a / S0
    if not lo[1] <= f <= hi[1]:
        return np.inf
    out[0] = S0
    out[1] = f
    cost = 0.0
    for i in range(m):
        r = a * np.exp(-b[i] * g) + c * e2[i] - y[i]
        cost += r * r
    return cost


@njit(parallel=True, cache=True)
def _plateau_batch(b, Y, P, lo, hi, tol, n_grid, moved, rmse, r2):
    n, m = Y.shape
    n_p = P.shape[1]  # 4, or 5 with the kurtosis K of the tissue compartment (kept, as D)
    for v in prange(n):
        moved[v] = False
        p = P[v]
        if not (np.isfinite(p[3]) and m > n_p and p[3] >= hi[3] - 0.05 * (hi[3] - lo[3])):
            continue
        y = Y[v]
        e2 = np.empty(m)
        sc = np.empty(2)
        best = np.empty(2)
        K = p[4] if n_p > 4 else 0.0
        cmin = 0.0
        for i in range(m):
            e2[i] = np.exp(-b[i] * p[2] + b[i] * b[i] * p[2] * p[2] * K / 6.0)
            r = p[0] * (p[1] * np.exp(-b[i] * p[3]) + (1.0 - p[1]) * e2[i]) - y[i]
            cmin += r * r
        limit = cmin * (1.0 + tol / (m - n_p))
        # walk down a log grid from the fitted D* while the cost stays within the limit, then
        # bisect the last step: the lower edge of the plateau the least-squares D* sits on
        g1 = np.log(p[3])
        step = (g1 - np.log(max(lo[3], 1e-6))) / (n_grid - 1)
        good = g1
        cbest = cmin
        bad = -np.inf
        for k in range(1, n_grid):
            c = _profile_cost(b, y, e2, np.exp(g1 - k * step), lo, hi, sc)
            if c <= limit:
                good = g1 - k * step
                cbest = c
                best[0] = sc[0]
                best[1] = sc[1]
            else:
                bad = g1 - k * step
                break
        if good == g1:
            continue
        if np.isfinite(bad):
            for _ in range(6):
                mid = 0.5 * (good + bad)
                c = _profile_cost(b, y, e2, np.exp(mid), lo, hi, sc)
                if c <= limit:
                    good = mid
                    cbest = c
                    best[0] = sc[0]
                    best[1] = sc[1]
                else:
                    bad = mid
        p[0] = best[0]
        p[1] = best[1]
        p[3] = np.exp(good)
        moved[v] = True
        rmse[v], r2[v] = quality_from_ssr(y, cbest)


def dstar_plateau(bvals, Yn, P, lower, upper, tol=PLATEAU_TOL, n_grid=PLATEAU_GRID):
    """The ``lsq`` step for D* on a flat cost at its upper bound, in place.

    For every voxel whose D* is within 5 % of the range below ``upper[3]``, D* is lowered along
    the profile of the cost (S0 and f solved exactly, in their bounds, D kept) as long as that
    cost stays at most the fitted cost + ``tol`` σ², σ² = SSR/(m − n_params): down a log-spaced grid
    (``n_grid`` points from ``lower[3]`` to the fitted D*), the last step bisected 6 times. The
    result is the lower edge of the flat stretch the least-squares D* sits on.

    Parameters
    ----------
    bvals : ndarray (m,)
        b-values (s/mm²).
    Yn : ndarray (n, m)
        Normalised signals.
    P : ndarray (n, 4) or (n, 5), C-contiguous
        (S0, f, D, D*) from the least-squares fit, changed in place; a fifth column is the kurtosis K
        of the tissue compartment (:mod:`qmri.models.diffusion.ivimk`), kept with D.
    lower, upper : ndarray (4,) or (5,)
        Bounds.

    Returns
    -------
    moved : ndarray of bool (n,); rmse, r2 : ndarray (n,) for the moved voxels (NaN elsewhere)
    """
    n = Yn.shape[0]
    moved = np.zeros(n, dtype=np.bool_)
    rmse = np.full(n, np.nan)
    r2 = np.full(n, np.nan)
    if n:
        _plateau_batch(np.ascontiguousarray(bvals, dtype=np.float64), np.ascontiguousarray(Yn), P,
                       np.ascontiguousarray(lower, dtype=np.float64), np.ascontiguousarray(upper, dtype=np.float64),
                       float(tol), int(n_grid), moved, rmse, r2)
    return moved, rmse, r2


def _fit_segmented(model, Y, C):
    Yn, scale, good = model.normalise(Y, C)
    P, status, rmse, r2 = model.segmented(Yn)
    res = FitResult.closed_form(model.spec.names, P, status, rmse, r2)
    model.complete(res, scale, good)
    return res


def lsq_start(model, Yn, C):
    """Start of ``lsq``: a cheaper segmented fit (one reweighting, D* from the grid), enough for LM."""
    P = model.segmented(Yn, 1, _START_GRID, 0)[0]
    return np.where(np.isfinite(P), P, model.initial[None, :])


def lsq_refine(model, res, Yn, C):
    """``lsq``: D* on a flat cost at its upper bound lowered to the least extreme equivalent
    value (:func:`dstar_plateau`)."""
    names = model.spec.names
    P = np.ascontiguousarray(np.stack([res.params[k] for k in names], axis=1))
    moved, rmse, r2 = dstar_plateau(model.bvals, Yn, P, model.lower, model.upper)
    if moved.any():
        for j, k in enumerate(names):
            res.params[k] = P[:, j]
        res.rmse = np.where(moved, rmse, res.rmse)
        res.r2 = np.where(moved, r2, res.r2)
        if "Dstar" in res.se:
            res.se["Dstar"] = np.where(moved, np.nan, res.se["Dstar"])


LSQ = LeastSquares(description="full bounded Levenberg-Marquardt fit of (S0, f, D, Dstar) from a segmented start; "
                               "where Dstar ends on its upper bound on a flat cost, the smallest Dstar as good within "
                               "0.1 residual variance (default)", start=lsq_start, refine=lsq_refine)
SEGMENTED = Method("segmented", "consensus fit: D from a reweighted log-linear fit over b >= threshold, f from "
                   "the intercept, Dstar by a one-parameter bounded fit", _fit_segmented,
                   reference="Sigmund et al. IVIM consensus recommendations; OSIPI TF2.4 reference fit",
                   validation=Validation(recovery=0.1, note=(
                       "biased without noise: the perfusion signal left at b >= threshold enters the D fit "
                       "(NRMSE of f 0.072 on the noise-free phantom)")))


class IVIM(DiffusionModel):
    """Bi-exponential IVIM bound to a set of b-values.

    Parameters
    ----------
    bvals : array_like, shape (n_b,)
        b-values in s/mm² (the order of the last axis of the data).
    bounds : dict, optional
        ``{name: (lower, upper)}`` overriding the defaults (S0 0.5–2 relative to the mean signal
        at the lowest b, f 0–1, D 0–0.005 mm²/s, Dstar 0.005–0.2 mm²/s; OSIPI TF2.4, with the S0
        range widened from OSIPI's 0.5–1.5 so that data without b=0 still fit).
    initial_guess : dict, optional
        ``{name: value}`` overriding the default initial guess (f 0.1, D 0.001, Dstar 0.01; OSIPI).
        The ``lsq`` method starts from the segmented fit; the initial guess is used where that
        fails.
    threshold : float
        b-value (s/mm²) at and above which perfusion is taken as negligible (segmented fit);
        default 200 (OSIPI, consensus).
    preset : str, optional
        Organ preset of the initial guess, one of :data:`PRESETS`.
    b0_threshold : float
        b-values (s/mm²) at or below it are fitted as b = 0 (e.g. 5 for b=0 images that the
        scanner labels b=5). Default 0: IVIM measures at b = 10, 20, 30 s/mm², which dipy's general
        default of 50 would erase (dipy's own IVIM use sets it to 0).
    lm_options : qmri.fitting.LMOptions, optional
        Stopping rules of the ``lsq`` fit.

    Raises
    ------
    QMRIInputError
        b-values not 1-D, non-finite or negative; unknown preset; bad bounds.

    Examples
    --------
    >>> import numpy as np
    >>> from qmri.models import IVIM
    >>> b = np.array([0, 10, 20, 50, 100, 200, 400, 600, 800, 1000.])
    >>> model = IVIM(b)
    >>> sig = model.signal(dict(S0=1000, f=0.1, D=1e-3, Dstar=0.02))
    >>> maps = model.fit(sig[None, :], method="lsq")
    >>> round(float(maps["D"][0]) * 1e3, 3)
    1.0
    """

    command = "ivim"
    cli = CommandText(
        summary="fit IVIM (S0, f, D, Dstar) to a diffusion series",
        description="Fit the bi-exponential IVIM model voxel by voxel. D and Dstar in mm2/s, b in s/mm2, f a fraction.")
    options = (
        Option("threshold", "b (s/mm2) from which perfusion is neglected in the segmented step (default 200)",
               float, DEFAULT_THRESHOLD),
        Option("preset", "organ preset of the initial guess", str, None, choices=tuple(sorted(PRESETS))),
        b0_threshold_option("fitted as b=0, e.g. 5 for b=0 images labelled b=5 (default 0: IVIM uses b=10-50)",
                            0.0),
    )
    methods = table(LSQ, SEGMENTED, DNN)
    default_method = "lsq"
    spec = IVIM_MODEL
    min_distinct_b = 1  # the methods' own checks (check_method) say what they need
    valid_b_max = 1500.0
    valid_b_reason = ("the tissue compartment is mono-exponential only up to about 1000-1500 s/mm2 (diffusion "
                      "kurtosis above; Jensen et al., MRM 2005;53:1432)")
    #: Fewest distinct b-values below ``threshold`` from which f and D* can be told apart.
    min_low_b = 3
    @property
    def kurtosis(self) -> bool:
        """Whether the tissue compartment carries the kurtosis term (the IVIM-kurtosis subclass, which
        declares a ``kurtosis_pair``): the segmented fit is then quadratic in b over b >= threshold."""
        return self.kurtosis_pair is not None

    def __init__(self, bvals, *, bounds=None, initial_guess=None, threshold=DEFAULT_THRESHOLD, preset=None,
                 b0_threshold: float = 0.0, lm_options: LMOptions | None = None):
        self.b0_threshold = check_b0_threshold(b0_threshold)
        b = check_bvals(bvals)
        bvals = np.where(b <= self.b0_threshold, 0.0, b)
        init = {}
        if preset is not None:
            if preset not in PRESETS:
                raise QMRIInputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
            init.update(PRESETS[preset])
        init.update(initial_guess or {})
        super().__init__(bvals, bounds=bounds, initial_guess=init, lm_options=lm_options)
        self.threshold = float(threshold)
        self.preset = preset

    demo = DiffusionDemo(parameters=("f", "D", "Dstar"), phantom={"snr": 30.0, "block": (16, 16, 4)})
    #: The network shipped for the phantom (``tools/make_pretrained.py``); a fit without weights trains
    #: on a pilot fit by a self-supervised network (:mod:`qmri.fitting.net.pilot`, measured against
    #: IVIM-NET in ``benchmarks/results/dnn.md``).
    network = DiffusionNetwork(pretrained={"n": 100_000, "snr": "10:60", "ensemble": 3}, training="pilot",
                               pilot="self")

    @classmethod
    def phantom_definition(cls):
        """Ten tissues of the OSIPI TF2.4 test data (``phantoms/ivim.json``), 13 b-values 0–1000 s/mm²."""
        from qmri.simulate import load_definition

        return load_definition("ivim")

    def check_method(self, method: str):
        name = type(self).__name__
        n_high = int(np.sum(self.bvals >= self.threshold))
        n_low = int(np.sum(self.bvals < self.threshold))
        need_high = 3 if self.kurtosis else 2  # the log-linear fit over b >= threshold: 2 or 3 coefficients
        if n_high < need_high or n_low < 1:
            raise QMRIInputError(
                f"{name} {method} needs at least {need_high} b-values >= {self.threshold:g} and 1 below it "
                f"(got {n_high} and {n_low})")
        n_params = self.spec.n_params
        if method == "lsq" and np.unique(self.bvals).size < n_params:
            raise QMRIInputError(f"{name} lsq needs at least {n_params} distinct b-values, got "
                                 f"{np.unique(self.bvals).size}")

    def provenance(self):
        prov = super().provenance()
        prov.update({"threshold": self.threshold, "preset": self.preset, "b0_threshold": self.b0_threshold})
        return prov

    @classmethod
    def settings_before_recorded(cls, provenance: dict) -> dict:
        """Sidecars without ``model_settings``: also the recorded ``threshold``, ``preset`` and ``b0_threshold``."""
        settings = super().settings_before_recorded(provenance)
        settings.update({k: provenance[k] for k in ("threshold", "preset", "b0_threshold") if k in provenance})
        return settings

    def segmented(self, Yn, wls_iters=_WLS_ITERS, n_grid=_DSTAR_GRID, golden_iters=_GOLDEN_ITERS):
        """The segmented fit of normalised signals ``Yn`` (n, n_b).

        Returns ``P`` (n, n_params: S0, f, D, Dstar and, with :attr:`kurtosis`, K) in normalised units
        (S0 = 1 unless clipped), status, rmse, r2.
        ``wls_iters`` reweightings of the log-linear fit, ``n_grid`` grid points of D* and
        ``golden_iters`` golden-section refinements (0: grid only).
        """
        n = Yn.shape[0]
        P = np.empty((n, self.spec.n_params))
        status = np.empty(n, dtype=np.int8)
        rmse = np.empty(n)
        r2 = np.empty(n)
        _segmented_batch(self.bvals, Yn, self.bvals >= self.threshold, self.lower, self.upper, wls_iters,
                         n_grid, golden_iters, bool(self.kurtosis), P, status, rmse, r2)
        return P, status, rmse, r2
