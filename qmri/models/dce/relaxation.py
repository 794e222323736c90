"""Spoiled gradient echo (SPGR) signal and the signal ↔ contrast-agent concentration conversion.

Signal equation (steady-state spoiled gradient echo, FLASH; e.g. Deoni et al., MRM 2003;49:515,
doi:10.1002/mrm.10407, Eq. 1)::

    S = M0 · sin(α) · (1 - E1) / (1 - cos(α) · E1),      E1 = exp(-TR · R1),  R1 = 1/T1

with TR in s, R1 in 1/s and α the (B1-corrected) flip angle. T2* decay at the echo time is
absorbed into M0 (assumed constant during the dynamic series).

Concentration (fast-exchange, linear relaxivity; Tofts, JMRI 1997;7:91)::

    R1(t) = R10 + r1 · C(t)

with r1 in 1/s/mM and C in mM. :func:`signal_to_concentration` is the standard inversion used by the
OSIPI DCE code collection: M0 from the mean pre-contrast signal and the pre-contrast T1 (T10),
then R1(t) from each dynamic signal, then C = (R1 - R10)/r1.
"""

from __future__ import annotations

import numpy as np

from qmri.errors import QMRIInputError
from qmri.jit import njit, prange

#: Default longitudinal relaxivity (1/s/mM): the value used for most cases of the OSIPI
#: signal-to-concentration test data (Edinburgh UCON, SI2Conc_data.csv) and a common choice for
#: gadolinium chelates at 1.5–3 T (Rohrer et al., Invest Radiol 2005;40:715 list 3.6–4.9 in plasma).
#: Set it for your agent and field strength.
DEFAULT_R1 = 4.5


def _spgr(m0, r1, fa_rad, tr):
    """``M0 sin α (1 - E1) / (1 - cos α E1)``, ``E1 = exp(-TR R1)`` (scalars or arrays)."""
    e1 = np.exp(-tr * r1)
    return m0 * np.sin(fa_rad) * (1.0 - e1) / (1.0 - np.cos(fa_rad) * e1)


#: SPGR signal for one set of scalars (a Numba kernel): M0 (a.u.), R1 (1/s), flip angle (rad), TR (s).
spgr_scalar = njit(cache=True)(_spgr)


def spgr_signal(M0, T1, fa_deg, tr_s):
    """Steady-state spoiled gradient-echo signal (broadcasting).

    Parameters
    ----------
    M0 : array_like
        Equilibrium signal (a.u.; includes receive gain and T2* decay).
    T1 : array_like
        Longitudinal relaxation time in s (> 0).
    fa_deg : array_like
        Flip angle in degrees (multiply by a relative B1 map beforehand to correct it).
    tr_s : array_like
        Repetition time in s.

    Returns
    -------
    ndarray
        ``M0 sin α (1 - E1)/(1 - cos α E1)`` with ``E1 = exp(-TR/T1)``, shape of the broadcast inputs.

    References
    ----------
    Deoni, Rutt, Peters, MRM 2003;49:515 (doi:10.1002/mrm.10407), Eq. 1.
    """
    T1 = np.asarray(T1, dtype=np.float64)
    with np.errstate(divide="ignore"):
        r1 = 1.0 / T1
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return _spgr(np.asarray(M0, np.float64), r1, np.deg2rad(np.asarray(fa_deg, np.float64)),
                     np.asarray(tr_s, np.float64))


def _check_acquisition(tr, fa):
    tr = float(tr)
    fa_arr = np.asarray(fa, dtype=np.float64)
    if not (np.isfinite(tr) and tr > 0):
        raise QMRIInputError(f"TR must be a positive number of seconds, got {tr}")
    if not np.all(np.isfinite(fa_arr)) or np.any(fa_arr <= 0) or np.any(fa_arr >= 180):
        raise QMRIInputError("flip angle must be in (0, 180) degrees")
    return tr, fa_arr


def m0_from_baseline(S0, *, t10, tr, fa):
    """Equilibrium signal M0 from a pre-contrast SPGR signal and the pre-contrast T1.

    Parameters
    ----------
    S0 : array_like
        Mean pre-contrast signal (a.u.).
    t10 : array_like
        Pre-contrast T1 in s, broadcastable to ``S0``.
    tr : float
        Repetition time in s.
    fa : array_like
        Flip angle in degrees, broadcastable to ``S0`` (a B1-corrected map is allowed).

    Returns
    -------
    ndarray
        ``M0 = S0 (1 - cos α E10) / (sin α (1 - E10))``, ``E10 = exp(-TR/T10)``.
    """
    tr, fa = _check_acquisition(tr, fa)
    a = np.deg2rad(fa)
    with np.errstate(divide="ignore", invalid="ignore"):
        e10 = np.exp(-tr / np.asarray(t10, dtype=np.float64))
        return np.asarray(S0, np.float64) * (1.0 - np.cos(a) * e10) / (np.sin(a) * (1.0 - e10))


def signal_to_r1(S, *, M0, tr, fa):
    """R1 (1/s) from SPGR signals with known M0 (inverse of :func:`spgr_signal`).

    Parameters
    ----------
    S : array_like, shape (..., T)
        Signals (a.u.).
    M0 : array_like, shape (...) or broadcastable to S
        Equilibrium signal; give it shape (..., 1) (or (...) — a trailing axis is added when
        ``M0.ndim == S.ndim - 1``).
    tr : float
        Repetition time in s.
    fa : array_like
        Flip angle in degrees, same broadcasting rule as ``M0``.

    Returns
    -------
    ndarray, shape (..., T)
        ``R1 = -ln(E1)/TR`` with ``E1 = (M0 sin α - S)/(M0 sin α - S cos α)``; NaN where the
        signal cannot be inverted (E1 ≤ 0, i.e. S ≥ M0 sin α, or non-finite input).
    """
    tr, fa = _check_acquisition(tr, fa)
    S = np.asarray(S, dtype=np.float64)
    M0 = np.asarray(M0, dtype=np.float64)
    if S.ndim >= 1 and M0.ndim == S.ndim - 1:
        M0 = M0[..., None]
    a = np.deg2rad(fa)
    if a.ndim and S.ndim >= 1 and a.ndim == S.ndim - 1:
        a = a[..., None]
    ms = M0 * np.sin(a)
    shape = np.broadcast_shapes(S.shape, ms.shape, np.shape(a))
    T = shape[-1] if shape else 1
    # (voxels, T) views (zero strides where a factor is constant along an axis); copies only where
    # the broadcast layout cannot be flattened
    S2, ms2, ca2 = (np.broadcast_to(x, shape).reshape(-1, T) for x in (S, ms, np.cos(a)))
    out = np.empty(S2.shape)
    _r1_from_signal(S2, ms2, ca2, float(tr), out)
    return out.reshape(shape)


@njit(parallel=True, cache=True)
def _r1_from_signal(S, ms, ca, tr, out):
    """``out = -ln(E1)/TR``, ``E1 = (ms - S)/(ms - S cos α)``, NaN where S >= ms, E1 <= 0 or any
    input is not finite (the inversion of :func:`spgr_signal`); all arrays (voxels, T)."""
    n, T = S.shape
    for v in prange(n):
        for j in range(T):
            s = S[v, j]
            m = ms[v, j]
            e1 = (m - s) / (m - s * ca[v, j])
            r = np.nan
            if s < m and e1 > 0.0:
                r = -np.log(e1) / tr
                if not np.isfinite(r):
                    r = np.nan
            out[v, j] = r


def signal_to_concentration(S, *, t10, r1=DEFAULT_R1, tr, fa, n_baseline, skip=0):
    """Contrast-agent concentration from dynamic SPGR signals (standard analytic inversion).

    Steps (as in the OSIPI DCE code collection, e.g. ``dce_to_r1eff`` / ``r1eff_to_conc``):
    S0 = mean of the pre-contrast frames ``skip … n_baseline-1``; M0 from S0 and T10
    (:func:`m0_from_baseline`); R1(t) from every frame (:func:`signal_to_r1`);
    ``C = (R1(t) - 1/T10) / r1``.

    Parameters
    ----------
    S : array_like, shape (..., T)
        Dynamic signals (a.u.); the last axis is time.
    t10 : float or array_like, shape (...)
        Pre-contrast T1 in s (scalar or a map matching ``S.shape[:-1]``).
    r1 : float
        Longitudinal relaxivity in 1/s/mM (default :data:`DEFAULT_R1` = 4.5).
    tr : float
        Repetition time in s.
    fa : float or array_like, shape (...)
        Flip angle in degrees (scalar, or a per-voxel B1-corrected map).
    n_baseline : int
        Number of pre-contrast frames at the start of the series (>= 1).
    skip : int
        Initial frames left out of the baseline mean (e.g. before steady state); default 0.
        The OSIPI test data were produced with ``skip=1``.

    Returns
    -------
    ndarray, shape (..., T)
        Concentration in mM; NaN where the signal cannot be inverted (signal at or above the
        fully relaxed limit M0 sin α, zero or non-finite baseline, non-positive T10).

    Raises
    ------
    QMRIInputError
        Non-positive TR, flip angle outside (0, 180)°, baseline frames out of range, r1 <= 0,
        t10 or fa map not broadcastable to the spatial shape.
    """
    S = np.asarray(S, dtype=np.float64)
    if S.ndim < 1:
        raise QMRIInputError("signal must have a time axis (last axis)")
    T = S.shape[-1]
    n_baseline = int(n_baseline)
    skip = int(skip)
    if not 0 <= skip < n_baseline <= T:
        raise QMRIInputError(
            f"baseline frames {skip}..{n_baseline - 1} are not within the {T} time points (need 0 <= skip < n_baseline <= T)")
    if not (np.isfinite(r1) and r1 > 0):
        raise QMRIInputError(f"relaxivity r1 must be positive (1/s/mM), got {r1}")
    spatial = S.shape[:-1]
    t10 = np.asarray(t10, dtype=np.float64)
    fa = np.asarray(fa, dtype=np.float64)
    for name, arr in (("t10", t10), ("fa", fa)):
        if arr.ndim and arr.shape != spatial:
            try:
                np.broadcast_shapes(arr.shape, spatial)
            except ValueError:
                raise QMRIInputError(f"{name} map shape {arr.shape} does not match the signal's spatial shape {spatial}") from None
    S0 = S[..., skip:n_baseline].mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r10 = np.where(t10 > 0, 1.0 / np.where(t10 > 0, t10, 1.0), np.nan)
    M0 = m0_from_baseline(S0, t10=t10, tr=tr, fa=fa)
    M0 = np.where(np.isfinite(M0) & (M0 > 0), M0, np.nan)
    R1 = signal_to_r1(S, M0=M0, tr=tr, fa=fa)
    R1 -= np.asarray(r10)[..., None]  # in place: no second series-sized array
    R1 /= r1
    return R1


def concentration_to_signal(C, *, t10, r1=DEFAULT_R1, tr, fa, M0):
    """SPGR signals for given concentrations (forward model of :func:`signal_to_concentration`).

    Parameters
    ----------
    C : array_like, shape (..., T)
        Concentration in mM.
    t10 : float or array_like, shape (...)
        Pre-contrast T1 in s.
    r1 : float
        Relaxivity in 1/s/mM.
    tr : float
        Repetition time in s.
    fa : float or array_like, shape (...)
        Flip angle in degrees.
    M0 : float or array_like, shape (...)
        Equilibrium signal (a.u.).

    Returns
    -------
    ndarray, shape (..., T)
        ``spgr_signal(M0, 1/(1/T10 + r1 C), fa, TR)``.
    """
    tr, fa = _check_acquisition(tr, fa)
    C = np.asarray(C, dtype=np.float64)

    def col(x):
        x = np.asarray(x, dtype=np.float64)
        return x[..., None] if (x.ndim and C.ndim >= 1 and x.ndim == C.ndim - 1) else x

    R1 = 1.0 / col(t10) + float(r1) * C
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return _spgr(col(M0), R1, np.deg2rad(col(fa)), tr)
