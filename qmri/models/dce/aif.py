"""Arterial input functions (AIFs) for DCE-MRI: population curves, shifting, files and ROIs.

Conventions (all functions)
---------------------------
* Time ``t`` in seconds from the start of the acquisition; concentration in mM.
* The pharmacokinetic models need the **plasma** concentration ``Cp``. Population curves are
  published for whole blood ``Cb``; they are returned as ``Cp = Cb / (1 - Hct)``. Pass ``hct=0``
  to get the published blood curve unchanged (this is what the OSIPI reference data hold).
* ``delay`` (s) > 0 means later arrival: the curve is ``f(t - delay)``, and zero for
  ``t < delay`` (no contrast before the start of the injection).

Sources
-------
* Parker et al., MRM 2006;56:993 (doi:10.1002/mrm.21066), Eq. 1 and Table 1.
* Georgiou et al., MRM 2019;81:1955 (doi:10.1002/mrm.27524), Eq. 1 (Horsfield et al., PMB
  2009;54:2933 functional form) and Table 3.
* McGrath et al., MRM 2009;61:1173 (doi:10.1002/mrm.21959), Eq. 5, Table 1 model B (rat).
* Reference values: OSIPI DCE-DSC-MRI code collection, ``test/PopulationAIF_DCE`` (Apache-2.0).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from qmri.errors import QMRIInputError

#: Default haematocrit (large-vessel Hct), a common choice in DCE-MRI analysis (e.g. Tofts et al.
#: 1999 examples; osipy and DCE-NET use 0.40–0.45). State the value used in your report.
DEFAULT_HCT = 0.42

#: Parker et al. 2006, Table 1 (time unit min, concentration mM).
PARKER_PARAMS = dict(A1=0.809, sigma1=0.0563, T1=0.17046, A2=0.330, sigma2=0.132, T2=0.365,
                     alpha=1.050, beta=0.1685, s=38.078, tau=0.483)

#: Georgiou et al. 2019, Table 3 (A in mM, m in 1/min, alpha unitless, beta and tau in min).
GEORGIOU_PARAMS = dict(A1=0.37, m1=0.11, A2=0.33, m2=1.17, A3=10.06, m3=16.02, alpha=5.26,
                       beta=0.032, tau=0.129)

#: McGrath et al. 2009, Table 1 model B (A in mM, k in 1/s, t1 in s).
MCGRATH_B_PARAMS = dict(A1=3.4, A2=1.81, k1=0.045, k2=0.0015, t1=7.0)


def _time(t):
    t = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(t)):
        raise QMRIInputError("AIF time points must be finite (seconds)")
    return t


def blood_to_plasma(cb, hct=DEFAULT_HCT):
    """Plasma concentration from whole-blood concentration, ``Cp = Cb / (1 - Hct)``.

    Parameters
    ----------
    cb : array_like
        Whole-blood concentration (mM).
    hct : float
        Haematocrit in [0, 1).

    Raises
    ------
    QMRIInputError
        Hct outside [0, 1).
    """
    hct = float(hct)
    if not 0.0 <= hct < 1.0:
        raise QMRIInputError(f"haematocrit must be in [0, 1), got {hct}")
    return np.asarray(cb, dtype=np.float64) / (1.0 - hct)


def parker(t, *, hct=DEFAULT_HCT, delay=0.0):
    """Parker population AIF (plasma), Parker et al. MRM 2006 Eq. 1 with Table 1 parameters.

    ``Cb(t) = Σ_{n=1,2} A_n/(σ_n√(2π)) exp(-(t-T_n)²/(2σ_n²)) + α exp(-βt)/(1 + exp(-s(t-τ)))``
    with t in minutes inside the formula.

    Parameters
    ----------
    t : array_like
        Time in s.
    hct : float
        Haematocrit for ``Cp = Cb/(1-Hct)``; default 0.42. ``hct=0`` returns the published
        whole-blood curve (the OSIPI reference values, ``ParkerAIF_ref*.csv``).
    delay : float
        Arrival delay in s: the curve is ``Cb(t - delay)`` and 0 for ``t < delay``.

    Returns
    -------
    ndarray, shape of ``t``
        Plasma concentration Cp in mM.
    """
    t = _time(t)
    p = PARKER_PARAMS
    tm = (t - float(delay)) / 60.0
    g1 = p["A1"] / (p["sigma1"] * np.sqrt(2 * np.pi)) * np.exp(-((tm - p["T1"]) ** 2) / (2 * p["sigma1"] ** 2))
    g2 = p["A2"] / (p["sigma2"] * np.sqrt(2 * np.pi)) * np.exp(-((tm - p["T2"]) ** 2) / (2 * p["sigma2"] ** 2))
    with np.errstate(over="ignore"):
        sig = p["alpha"] * np.exp(-p["beta"] * tm) / (1.0 + np.exp(-p["s"] * (tm - p["tau"])))
    cb = np.where(tm >= 0, g1 + g2 + sig, 0.0)
    return blood_to_plasma(cb, hct)


def georgiou(t, *, hct=DEFAULT_HCT, delay=0.0):
    """Georgiou population AIF (plasma), Georgiou et al. MRM 2019 Eq. 1 with Table 3 parameters.

    Horsfield functional form: a sum of three exponentials times a train of normalised gamma
    variates, one per circulation k = 0, 1, ... (period τ, shape ``(k+1)α + k``, scale β)::

        Cb(t) = Σ_i A_i exp(-m_i t) · Σ_k g(t - kτ; (k+1)α + k, β),
        g(x; a, β) = x^a exp(-x/β) / (β^(a+1) Γ(a+1)) for x > 0, else 0

    with t in minutes inside the formula.

    ``t`` (s), ``hct`` and ``delay`` (s) and the returned plasma concentration (mM, shape of
    ``t``) are as in :func:`parker`.

    Notes
    -----
    The OSIPI reference (``GeorgiouAIF_ref.csv``) is the curve published with the paper
    (supplementary table, 0.1 s sampling). The functional form with the rounded Table 3
    parameters differs from that table by at most 0.08 mM (0.9 % of the 8.65 mM peak), but by
    more than OSIPI's 1e-4 mM + 1 % on the up-slope (0.7–6 s) and around the first trough
    (14–20 s); those reference cases are expected failures in the test suite.
    """
    t = _time(t)
    p = GEORGIOU_PARAMS
    tm = (t - float(delay)) / 60.0
    tmax = float(np.max(tm)) if tm.size else 0.0
    n_circ = max(int(np.ceil(tmax / p["tau"])) + 1, 1)
    gam = np.zeros_like(tm)
    for k in range(n_circ):
        a = (k + 1) * p["alpha"] + k
        x = tm - k * p["tau"]
        pos = x > 0
        if not np.any(pos):
            break
        xp = x[pos]
        gam[pos] += np.exp(a * np.log(xp) - xp / p["beta"] - (a + 1) * np.log(p["beta"]) - math.lgamma(a + 1))
    exps = (p["A1"] * np.exp(-p["m1"] * tm) + p["A2"] * np.exp(-p["m2"] * tm) + p["A3"] * np.exp(-p["m3"] * tm))
    cb = np.where(tm > 0, exps * gam, 0.0)
    return blood_to_plasma(cb, hct)


def preclinical(t, *, delay=0.0, hct=0.0):
    """Preclinical (rat) population AIF, McGrath et al. MRM 2009 Eq. 5, Table 1 model B.

    ``C(t) = (A1 + A2) t/t1`` for ``0 ≤ t ≤ t1``, ``A1 exp(-k1 (t-t1)) + A2 exp(-k2 (t-t1))``
    after, with A1 = 3.4 mM, A2 = 1.81 mM, k1 = 0.045 /s, k2 = 0.0015 /s, t1 = 7 s (the form
    implemented in the OSIPI code collection, ST_USyd_AUS ``preclinicalAIF``).

    Parameters
    ----------
    t : array_like
        Time in s.
    delay : float
        Arrival delay in s (curve ``C(t - delay)``, 0 before).
    hct : float
        Default 0: the published curve unchanged (OSIPI's reference calls it ``Cb``). Give a
        haematocrit to convert to plasma, ``C/(1 - Hct)``.

    Returns
    -------
    ndarray, shape of ``t``
        Concentration in mM.
    """
    t = _time(t)
    p = MCGRATH_B_PARAMS
    x = t - float(delay)
    rise = (p["A1"] + p["A2"]) * x / p["t1"]
    fall = p["A1"] * np.exp(-p["k1"] * (x - p["t1"])) + p["A2"] * np.exp(-p["k2"] * (x - p["t1"]))
    c = np.where(x < 0, 0.0, np.where(x <= p["t1"], rise, fall))
    return blood_to_plasma(c, hct)


#: Population AIFs by name (for command-line choices).
POPULATION_AIFS = {"parker": parker, "georgiou": georgiou, "preclinical": preclinical}

#: Finest spacing (s) of the grid a population AIF is sampled on for the convolution: this, or a
#: tenth of the shortest frame interval when that is shorter.
POPULATION_STEP = 0.5
#: Most samples of a population AIF's fine grid (a day of frames at the default step is 172 800).
MAX_POPULATION_SAMPLES = 1_000_000


def population_samples(name, t, *, hct=DEFAULT_HCT, delay=0.0, step=None):
    """A population AIF sampled finely enough for the convolution, on its own grid.

    The curve is evaluated every ``step`` s (default: :data:`POPULATION_STEP`, or a tenth of the
    shortest frame interval when that is shorter) from the first to the last frame, its start
    (``delay``) included. (:class:`qmri.models.dce.DCE` then leaves out of its convolution grid the
    samples a straight line reproduces, so the smooth washout costs little.)

    Parameters
    ----------
    name : {"parker", "georgiou", "preclinical"}
    t : array_like (n,)
        Frame times in s (increasing).
    hct, delay : float
        As :func:`parker` (``preclinical`` is returned unchanged, as published, whatever ``hct``).
    step : float, optional
        Spacing of the fine grid in s.

    Returns
    -------
    times : ndarray (k,)
        Sample times in s, strictly increasing, from ``t[0]`` to ``t[-1]``.
    cp : ndarray (k,)
        Plasma concentration in mM.

    Raises
    ------
    QMRIInputError
        Unknown name, bad times, or a grid of more than :data:`MAX_POPULATION_SAMPLES` samples.
    """
    if name not in POPULATION_AIFS:
        raise QMRIInputError(f"unknown population AIF {name!r}; choose one of {', '.join(POPULATION_AIFS)}")
    t = _time(t)
    t0, t1 = float(t[0]), float(t[-1])
    if step is None:
        gaps = np.diff(t)
        step = min(POPULATION_STEP, float(gaps.min()) / 10.0) if gaps.size else POPULATION_STEP
    n = max(int(np.ceil((t1 - t0) / step)), 1)
    if n > MAX_POPULATION_SAMPLES:
        raise QMRIInputError(f"a population AIF from {t0:g} to {t1:g} s every {step:g} s would need {n} samples "
                             f"(at most {MAX_POPULATION_SAMPLES}); check the frame times (in s) and their "
                             "shortest interval")
    grid = t0 + (t1 - t0) * np.arange(n + 1) / n
    if t0 < delay < t1:  # the start of the curve is a sample (a point within 1e-6 s is moved onto it)
        near = int(np.argmin(np.abs(grid - delay)))
        if abs(grid[near] - delay) <= 1e-6:
            grid[near] = float(delay)
        else:
            grid = np.union1d(grid, [float(delay)])
    fn = POPULATION_AIFS[name]
    c = fn(grid, delay=delay) if name == "preclinical" else fn(grid, hct=hct, delay=delay)
    return grid, c


#: Smallest AIF peak (mM) over the frames that counts as signal: measured and population AIFs peak
#: at 1-10 mM of plasma (Parker et al., MRM 2006;56:993: 6 mM), so below 1e-3 mM there is no bolus.
MIN_AIF_PEAK = 1e-3


def check_signal(times, cp, t, where: str = "AIF") -> None:
    """Refuse an AIF without signal over the series: its peak between the first and the last frame
    below :data:`MIN_AIF_PEAK` (zero or negative, or a bolus that arrives after the last frame).

    Parameters
    ----------
    times : ndarray (k,)
        Sample times of the AIF (s).
    cp : ndarray (k,)
        Plasma concentration (mM).
    t : ndarray (n,)
        Frame times (s).
    where : str
        The AIF's source, named in the error.

    Raises
    ------
    QMRIInputError
        No signal over the frames.
    """
    times, cp, t = (np.asarray(v, dtype=np.float64) for v in (times, cp, t))
    over = (times >= t[0]) & (times <= t[-1])
    seen = cp[over] if over.any() else np.interp(t, times, cp)
    peak = float(np.max(seen)) if seen.size else float("nan")
    if not peak >= MIN_AIF_PEAK:
        late = cp.size and np.max(cp) >= MIN_AIF_PEAK and times[np.argmax(cp >= MIN_AIF_PEAK)] > t[-1]
        why = f"the bolus arrives after the last frame ({t[-1]:g} s)" if late else "zero or negative"
        raise QMRIInputError(f"{where}: no signal over the series (peak {peak:.3g} mM between {t[0]:g} and "
                             f"{t[-1]:g} s: {why}); the fit cannot determine any parameter")


def thin(t, c, tol):
    """Indices of the samples to keep so that linear interpolation through them departs from every
    sample by at most ``tol`` (greedy: each segment is made as long as the tolerance allows; the
    first and last samples are always kept; ``tol <= 0`` keeps every sample)."""
    return _thin(np.asarray(t, dtype=np.float64), np.asarray(c, dtype=np.float64), float(tol))


def _thin(t, c, tol):
    n = t.size
    if n <= 2 or tol <= 0:
        return np.arange(n)

    def fits(i, j):
        seg = slice(i + 1, j)
        line = c[i] + (c[j] - c[i]) * (t[seg] - t[i]) / (t[j] - t[i])
        return bool(np.all(np.abs(line - c[seg]) <= tol))

    keep = [0]
    i = 0
    while i < n - 1:
        step = 1
        while i + 2 * step < n and fits(i, i + 2 * step):
            step *= 2
        lo, hi = i + step, min(i + 2 * step, n - 1)  # fits(i, lo) holds
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fits(i, mid):
                lo = mid
            else:
                hi = mid
        j = hi if fits(i, hi) else lo
        keep.append(j)
        i = j
    return np.asarray(keep)


def shift(t, c, delay):
    """Delay a sampled curve: ``c(t - delay)`` by linear interpolation, 0 before the first sample.

    Parameters
    ----------
    t : array_like, shape (T,)
        Increasing sample times in s.
    c : array_like, shape (T,)
        Curve values at ``t``.
    delay : float
        Shift in s; > 0 means later arrival. For ``delay < 0`` the last value is held at the end.

    Returns
    -------
    ndarray, shape (T,)

    Raises
    ------
    QMRIInputError
        Shapes differ or times not strictly increasing.
    """
    t = _time(t)
    c = np.asarray(c, dtype=np.float64)
    if t.ndim != 1 or c.shape != t.shape:
        raise QMRIInputError(f"time and curve must be 1-D of the same length, got {t.shape} and {c.shape}")
    if t.size > 1 and np.any(np.diff(t) <= 0):
        raise QMRIInputError("time points must be strictly increasing")
    if t.size == 0:
        return c.copy()
    return np.interp(t - float(delay), t, c, left=0.0, right=c[-1])


def load_aif_csv(path, *, blood=False, hct=DEFAULT_HCT):
    """Read an AIF from a two-column text file: time (s), concentration (mM).

    Comma, semicolon, tab or whitespace separated; one header row is allowed (skipped when it
    is not numeric); lines starting with ``#`` are comments.

    Parameters
    ----------
    path : str or Path
    blood : bool
        The file holds whole-blood concentration; convert it to plasma with ``hct``.
    hct : float
        Haematocrit used when ``blood`` is True (default 0.42).

    Returns
    -------
    t : ndarray, shape (T,)
        Time in s (strictly increasing).
    cp : ndarray, shape (T,)
        Plasma concentration in mM.

    Raises
    ------
    QMRIInputError
        Missing or unreadable file, non-numeric content, not exactly 2 columns, fewer than 2
        rows, non-finite values, times not strictly increasing (one-line message naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise QMRIInputError(f"AIF file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise QMRIInputError(f"cannot read AIF file {path}: {exc}") from None
    rows = []
    header_seen = False
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        fields = [f for f in s.replace(",", " ").replace(";", " ").split()]
        try:
            vals = [float(f) for f in fields]
        except ValueError:
            if not rows and not header_seen:
                header_seen = True
                continue
            raise QMRIInputError(f"AIF file {path}: line {lineno} is not numeric: {s[:60]!r}") from None
        if len(vals) != 2:
            raise QMRIInputError(f"AIF file {path}: line {lineno} has {len(vals)} columns, expected 2 (time s, concentration mM)")
        rows.append(vals)
    if len(rows) < 2:
        raise QMRIInputError(f"AIF file {path} has {len(rows)} data row(s); at least 2 are needed")
    arr = np.asarray(rows, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise QMRIInputError(f"AIF file {path} contains non-finite values")
    t, c = arr[:, 0], arr[:, 1]
    if np.any(np.diff(t) <= 0):
        raise QMRIInputError(f"AIF file {path}: times must be strictly increasing (seconds)")
    if blood:
        c = blood_to_plasma(c, hct)
    return t, c


def roi_aif(concentration, mask):
    """Mean concentration curve over an arterial region of interest.

    Parameters
    ----------
    concentration : array_like, shape (X, Y, Z, T) (any spatial dims)
        Concentration in mM.
    mask : array_like of bool, shape concentration.shape[:-1]
        Arterial voxels.

    Returns
    -------
    ndarray, shape (T,)
        Mean over the masked voxels (NaN voxels ignored), in mM. Whole blood if the data are
        whole blood: convert with :func:`blood_to_plasma`.

    Raises
    ------
    QMRIInputError
        Mask shape differs from the spatial shape, mask empty, or every masked value NaN at a
        time point.
    """
    conc = np.asarray(concentration, dtype=np.float64)
    mask = np.asarray(mask)
    if conc.ndim < 2 or mask.shape != conc.shape[:-1]:
        raise QMRIInputError(f"AIF mask shape {mask.shape} does not match the concentration's spatial shape {conc.shape[:-1]}")
    m = mask.astype(bool)
    if not m.any():
        raise QMRIInputError("AIF mask is empty")
    sel = conc[m]
    ok = np.isfinite(sel)
    if not ok.any(axis=0).all():
        raise QMRIInputError("AIF ROI has no finite concentration at some time points")
    return np.where(ok, sel, 0.0).sum(axis=0) / ok.sum(axis=0)
