"""Real acquisitions: qmri's commands run to the end on scanner data and give physiological values.

Every case writes its inputs as the files a user has (NIfTI series, ``.bval``/``.bvec``, frame-time
file, masks) and runs the command's library layer (:func:`qmri.workflows.fit_files`, what
``qmri <command>`` runs; :func:`qmri.habitats.files.habitats_from_files` for ``qmri habitat``), so a
crash anywhere between reading and writing fails the case with its message. The data:

* **brain** — dipy's ``small_101D`` (shipped with dipy, a required dependency): a 6×10×10 crop of a
  real 3 T brain acquisition, 2.5 mm voxels, 102 volumes at b = 15–4065 s/mm² (one volume below
  b = 200). Commands: ``dki`` (b ≤ :data:`DKI_BMAX`), ``adc``, ``ivim``, ``stretched``
  (b ≤ :data:`LOW_BMAX`), ``habitat`` on the DKI maps. ROI: the whole crop (:func:`brain_mask`).
* **kidney** — MR renography of 12 patients' scans at 3 T (``data/real/kruk``, from the dcmri
  0.6.14 wheel, Apache-2.0; Basak et al., Magn Reson Imaging 2019;59:53-60; see its SOURCE.txt):
  aorta and kidney ROI curves, kidney T1 and volumes and the radio-isotope single-kidney GFR.
  Command: ``dce --model patlak`` with the measured aortic input (``--aif roi:``).
* **brain VFA** — the Edinburgh patient white-matter voxels of the OSIPI T1 file
  (``data/osipi/.../t1_brain_data.csv``, shipped for the ``osipi-t1`` suite). Command: ``t1``.

Rules (each stated with its source in :data:`RANGES` and the case functions): the ROI median of
every judged map lies in its physiological range; where an independent or published value exists,
qmri agrees with it within a stated tolerance: DKI against dipy's WLS fit of the same volumes
(:data:`DIPY_RTOL`), the kidney SK-GFR (Ktrans × kidney volume) against the isotope SK-GFR
(:data:`GFR_MIN_R`, :data:`GFR_MAX_BIAS`), the VFA T1 against OSIPI's reference R1 (OSIPI's
tolerance).
"""

from __future__ import annotations

import csv
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from qmri import io
from qmri.habitats.files import habitats_from_files
from qmri.models import command as model_command
from qmri.validation import osipi
from qmri.validation.cases import Case, Outcome, compare
from qmri.validation.osipi_t1 import A_TOL, R_TOL
from qmri.workflows import fit_files

SUITE = "real"
TITLE = "Real acquisitions"
RULES = ("scanner data (dipy small_101D brain; kidney MR renography of 12 scans with isotope GFR, dcmri/Basak "
         "2019; OSIPI brain VFA voxels) through the commands' file workflows: each runs to the end; ROI medians "
         "in physiological ranges (sources in qmri/validation/real.py); DKI within 1 % of dipy's WLS, kidney "
         "SK-GFR against isotope SK-GFR (r >= 0.5, |mean difference| <= 10 mL/min), T1 within OSIPI's tolerance")

#: Root of the shipped real data.
DATA = Path(__file__).resolve().parent / "data" / "real"

#: Highest b (s/mm²) of the DKI fit: the kurtosis expansion holds to b ≈ 2000–3000 s/mm² in brain
#: (Jensen & Helpern, NMR Biomed 2010;23:698-710).
DKI_BMAX = 2500.0
#: Highest b (s/mm²) of the ADC, IVIM and stretched-exponential fits: the mono-exponential range
#: of clinical ADC (b ≤ 1000 s/mm²).
LOW_BMAX = 1000.0
#: Median of qmri's DKI maps against dipy's WLS on the same volumes: within 1 % (per voxel the two
#: agree to 1e-3 relative in ≥ 99 % of voxels, tests/test_dki.py; 1 % leaves room for dipy's own
#: elliptic-integral approximation in MK).
DIPY_RTOL = 0.01
#: Kidney: haematocrit, blood T1 at 3 T (Lu et al., MRM 2004;52:679-682: R1 = 0.52·Hct + 0.38 /s)
#: and the r1 of gadoterate at 3 T (3.5 /s/mM: the value of ``dcmri.relaxivity``, which ships the data;
#: blood measurements: Shen et al., Invest Radiol 2015;50:330-338).
HCT = 0.45
BLOOD_T1_3T = 1.0 / (0.52 * HCT + 0.38)
R1_GADOTERATE_3T = 3.5
#: SK-GFR by MR against the isotope SK-GFR, over the shipped kidneys: Pearson r at least 0.5 (the
#: two-sided 5 % critical value for 24 pairs is 0.40) and a mean difference within ±10 mL/min. MR
#: renography agrees with isotope or iohexol GFR only to limits of agreement of ±30–40 mL/min
#: (Eikefjord et al., Acta Radiol 2017, doi:10.1177/0284185116666417: total GFR against
#: iohexol, limits of agreement [-42, 45] mL/min/1.73 m²), so a
#: per-kidney tolerance would not test anything; the mean over 24 kidneys (standard error ≈ 2 mL/min
#: at an SD of 10 mL/min) detects a systematic error (units, relaxivity, haematocrit, AIF) while
#: admitting the Patlak model's known underestimation where tubular outflow starts within the window.
GFR_MIN_R = 0.5
GFR_MAX_BIAS = 10.0

#: Physiological ranges of the ROI medians: ``{(data, map): (low, high, unit, source)}``.
RANGES = {
    ("brain", "MD"): (0.6e-3, 1.0e-3, "mm²/s", "brain parenchyma 0.7–0.9e-3 (Pierpaoli et al., Radiology "
                                                "1996;201:637-648)"),
    ("brain", "FA"): (0.15, 0.7, "", "white matter 0.4–0.8, grey matter 0.1–0.3; a mixed crop lies between "
                                     "(Pierpaoli et al. 1996)"),
    ("brain", "MK"): (0.5, 1.5, "", "grey matter ~0.7–0.9, white matter ~1.0–1.3 (Jensen et al., MRM "
                                    "2005;53:1432-1440)"),
    ("brain", "ADC"): (0.6e-3, 1.0e-3, "mm²/s", "normal brain 0.7–0.9e-3 at b ≤ 1000 (Helenius et al., AJNR Am J "
                                                "Neuroradiol 2002;23:194-199)"),
    ("brain", "D"): (0.5e-3, 1.0e-3, "mm²/s", "brain D ≈ ADC minus perfusion, 0.6–0.8e-3 (Federau et al., "
                                              "Radiology 2012;265:874-881)"),
    ("brain", "f"): (0.0, 0.15, "", "brain perfusion fraction 0.02–0.1 (Federau et al. 2012; Le Bihan et al., "
                                    "Radiology 1988;168:497-505)"),
    ("brain", "DDC"): (0.5e-3, 1.1e-3, "mm²/s", "brain DDC 0.6–0.9e-3 (Bennett et al., MRM 2003;50:727-734)"),
    ("brain", "alpha"): (0.6, 1.0, "", "brain alpha 0.7–0.95 (Bennett et al. 2003)"),
    ("kidney", "Ktrans"): (0.01, 0.6, "1/min", "filtration per kidney volume: healthy single-kidney GFR 52 ± 14 "
                                               "mL/min/1.73 m² (Eikefjord et al. 2017) in a kidney of ~150 mL gives "
                                               "~0.35 /min; lower in renal disease (these are patients)"),
    ("kidney", "vp"): (0.02, 0.6, "", "renal plasma volume: 0.15 mL/mL is the starting value of dcmri's kidney "
                                      "model, 0.3 its bound; the Patlak vp, fitted without outflow, also takes up "
                                      "early tubular signal, hence the wider upper limit"),
    ("brain VFA", "WM T1"): (0.6, 1.4, "s", "white matter T1 0.8–1.1 s at 3 T, 0.6–0.8 s at 1.5 T (Stikov et al., "
                                            "MRM 2015;73:514-522)"),
}


class MissingRealData(FileNotFoundError):
    """A real-data file that should ship with qmri is absent."""


def existing(*parts) -> Path:
    """Path of a shipped real-data file (``parts`` relative to :data:`DATA`).

    Raises
    ------
    MissingRealData
    """
    p = DATA.joinpath(*parts)
    if not p.exists():
        raise MissingRealData(f"real reference data missing: {p} (shipped in qmri/validation/data/real)")
    return p


def judge_ranges(values: dict, data: str) -> Outcome:
    """ROI medians ``{map: value}`` against :data:`RANGES` of ``data``; the message names every
    median outside its range with the range and its source."""
    bad, metrics = [], {}
    for name, value in values.items():
        low, high, unit, source = RANGES[(data, name)]
        scale, shown = (1e3, "1e-3 mm²/s") if unit == "mm²/s" else (1.0, unit)  # readable in the report
        metrics[f"median {name}" + (f" ({shown})" if shown else "")] = float(value) * scale
        if not low <= value <= high:
            bad.append(f"{name} median {value * scale:.4g} outside {low * scale:g}–{high * scale:g}"
                       + (f" {shown}" if shown else "") + f" ({source})")
    return Outcome(not bad, "; ".join(bad), metrics=metrics)


# ---------------------------------------------------------------------------------------------
# brain: dipy small_101D
# ---------------------------------------------------------------------------------------------
def brain_files() -> tuple[Path, Path, Path]:
    """dipy's ``small_101D`` series, ``.bval`` and ``.bvec`` (shipped with dipy)."""
    from dipy.data import get_fnames

    return tuple(Path(p) for p in get_fnames(name="small_101D"))


@lru_cache(maxsize=1)
def brain_mask() -> np.ndarray:
    """The ROI of ``small_101D``: every voxel of the crop whose b ≈ 0 signal (the b < 50 volume) is
    positive. The crop lies inside the brain: its b ≈ 0 signal is 186–1004 (the bright corner is
    CSF, bright in this T2-weighted volume), and DKI fits every voxel with a median R² of 0.99,
    which noise-only background would not give. (dipy's ``median_otsu`` keeps only the 96 bright
    CSF/grey-matter voxels here, so it is not used.)"""
    import nibabel as nib

    series, bval, _ = brain_files()
    data = np.asarray(nib.load(series).dataobj, dtype=np.float64)
    return data[..., np.loadtxt(bval) < 50].mean(axis=-1) > 0


def _write_mask(path: Path, mask: np.ndarray, like: Path) -> Path:
    import nibabel as nib

    io.write_map(path, mask.astype(np.uint8), affine=nib.load(like).affine, dtype=np.uint8, intent="brain mask")
    return path


def fit_brain(command: str, out_dir: Path, **options):
    """``qmri <command>`` on ``small_101D`` inside its brain mask (files written to ``out_dir``)."""
    series, bval, bvec = brain_files()
    cls = model_command(command)
    mask = _write_mask(Path(out_dir) / "brain_mask.nii.gz", brain_mask(), series)
    inputs = {"bval": bval, **({"bvec": bvec} if cls.uses_bvecs else {})}
    method = options.pop("method", None)
    return fit_files(cls, series, out_dir=Path(out_dir) / command, mask=mask, method=method, bids=False,
                     **inputs, **options)


def _medians(maps, names, mask) -> dict:
    return {k: float(np.nanmedian(np.asarray(maps[k])[mask])) for k in names}


def brain_case(command: str, names: tuple, **options) -> Outcome:
    """Fit ``small_101D`` with ``command`` and judge the ROI medians of ``names``."""
    with tempfile.TemporaryDirectory() as tmp:
        outcome = fit_brain(command, Path(tmp), **options)
    mask = brain_mask()
    failed = int((np.asarray(outcome.maps["status"])[mask] == 2).sum())
    result = judge_ranges(_medians(outcome.maps, names, mask), "brain")
    result.metrics["voxels"] = int(mask.sum())
    if failed > mask.sum() // 20:
        return Outcome(False, f"{failed}/{int(mask.sum())} brain voxels failed", metrics=result.metrics).merge(result)
    return result


def dipy_dki_medians(mask) -> dict:
    """ROI medians of dipy's WLS DKI (MD, FA, MK, MKT; kurtosis clipped to qmri's default bounds)
    on the volumes with b <= :data:`DKI_BMAX`."""
    import nibabel as nib
    from dipy.core.gradients import gradient_table
    from dipy.reconst import dki

    from qmri.models import DKI

    series, bval, bvec = brain_files()
    b, g = np.loadtxt(bval), np.loadtxt(bvec).T
    keep = b <= DKI_BMAX
    data = np.asarray(nib.load(series).dataobj, dtype=np.float64)[..., keep]
    fit = dki.DiffusionKurtosisModel(gradient_table(b[keep], bvecs=g[keep]), fit_method="WLS").fit(data, mask=mask)
    model = DKI(b[keep], g[keep])
    kmin, kmax = model.min_kurtosis, model.max_kurtosis
    maps = {"MD": fit.md, "FA": fit.fa, "MK": fit.mk(min_kurtosis=kmin, max_kurtosis=kmax),
            "MKT": fit.mkt(min_kurtosis=kmin, max_kurtosis=kmax)}
    return {k: float(np.median(v[mask])) for k, v in maps.items()}


def dki_case() -> Outcome:
    """``qmri dki --bmax 2500`` on ``small_101D``: MD, FA, MK medians in range and within
    :data:`DIPY_RTOL` of dipy's WLS fit of the same volumes."""
    with tempfile.TemporaryDirectory() as tmp:
        outcome = fit_brain("dki", Path(tmp), bmax=DKI_BMAX)
    mask = brain_mask()
    ours = _medians(outcome.maps, ("MD", "FA", "MK", "MKT"), mask)
    ranges = judge_ranges({k: ours[k] for k in ("MD", "FA", "MK")}, "brain")
    ref = dipy_dki_medians(mask)
    names = list(ref)
    agree = compare([ours[k] for k in names], [ref[k] for k in names], 0.0, DIPY_RTOL,
                    "ROI medians MD, FA, MK, MKT vs dipy WLS", "ROI median, qmri vs dipy")
    agree.metrics.update({f"dipy median {k}" + (" (1e-3 mm²/s)" if k == "MD" else ""): v * (1e3 if k == "MD" else 1)
                          for k, v in ref.items()})
    return ranges.merge(agree)


def habitat_case() -> Outcome:
    """``qmri habitat`` on the DKI maps (MD, FA, MK) of ``small_101D`` in its brain mask, k = 2:
    runs to the end and labels every ROI voxel 1 or 2."""
    import nibabel as nib

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fit_brain("dki", tmp, bmax=DKI_BMAX)
        out = habitats_from_files(out_dir=tmp / "habitat", maps=[f"{tmp / 'dki'}:MD,FA,MK"],
                                  mask=tmp / "brain_mask.nii.gz", k=2, seed=0)
        label_file = next(p for p in out.written if Path(p).name.endswith("habitats.nii.gz"))
        labels = np.asarray(nib.load(label_file).dataobj)
    mask = brain_mask()
    inside = labels[mask]
    counts = {int(v): int((inside == v).sum()) for v in (1, 2)}
    ok = set(np.unique(inside)) <= {1, 2} and all(counts.values())
    return Outcome(bool(ok), "" if ok else f"habitat labels inside the ROI: {sorted(set(np.unique(inside)))}",
                   metrics={f"voxels in habitat {k}": v for k, v in counts.items()})


# ---------------------------------------------------------------------------------------------
# kidney: MR renography (dcmri KRUK, Basak et al. 2019)
# ---------------------------------------------------------------------------------------------
def kidney_scans() -> dict:
    """The shipped kidney scans: ``{scan: {parameters..., "time", "aorta", "LK", "RK" (arrays)}}``."""
    scans = {}
    with open(existing("kruk", "scans.csv"), newline="") as fh:
        for row in csv.DictReader(fh):
            scans[row["scan"]] = {k: (v if k in ("scan", "subject", "visit", "agent") else float(v))
                                  for k, v in row.items()}
    curves: dict = {}
    with open(existing("kruk", "curves.csv"), newline="") as fh:
        for row in csv.DictReader(fh):
            curves.setdefault(row["scan"], []).append([float(row[k]) for k in ("time_s", "aorta", "LK", "RK")])
    for scan, rows in curves.items():
        a = np.array(rows)
        scans[scan].update(time=a[:, 0], aorta=a[:, 1], LK=a[:, 2], RK=a[:, 3])
    return scans


def write_kidney_inputs(scan: dict, folder) -> dict:
    """The files of one scan as a user would have them: ``dce.nii.gz`` (3 voxels: aorta, left and
    right kidney, frames along the 4th axis), ``time.txt``, ``aorta.nii.gz`` (the AIF ROI),
    ``kidneys.nii.gz`` (fit mask), ``t1.nii.gz`` (blood T1 at 3 T in the aorta, the measured kidney
    T1s); returns the ``fit_files`` inputs (``qmri dce`` options by keyword)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    series = np.stack([scan["aorta"], scan["LK"], scan["RK"]])[:, None, None, :]
    aorta = np.array([1, 0, 0], np.uint8)[:, None, None]
    io.write_map(folder / "dce.nii.gz", series)
    io.write_map(folder / "aorta.nii.gz", aorta, dtype=np.uint8, intent="aorta")
    io.write_map(folder / "kidneys.nii.gz", 1 - aorta, dtype=np.uint8, intent="kidneys")
    io.write_map(folder / "t1.nii.gz", np.array([BLOOD_T1_3T, scan["LK_T1_s"], scan["RK_T1_s"]])[:, None, None])
    io.write_text(folder / "time.txt", "\n".join(f"{t:g}" for t in scan["time"]) + "\n")
    return {"series": folder / "dce.nii.gz", "mask": folder / "kidneys.nii.gz", "time": folder / "time.txt",
            "aif": f"roi:{folder / 'aorta.nii.gz'}", "t1": folder / "t1.nii.gz", "fa": scan["FA_deg"],
            "tr": scan["TR_s"], "baseline": int(scan["n0"]), "r1": R1_GADOTERATE_3T, "hct": HCT}


@lru_cache(maxsize=None)
def fit_kidney(name: str) -> dict:
    """``qmri dce --model patlak`` on one shipped scan: ``{"Ktrans", "vp", "status"}`` of the left
    and right kidney, and the MR SK-GFR (Ktrans × volume, mL/min)."""
    scan = kidney_scans()[name]
    with tempfile.TemporaryDirectory() as tmp:
        inputs = write_kidney_inputs(scan, Path(tmp) / "in")
        series, mask = inputs.pop("series"), inputs.pop("mask")
        maps = fit_files(model_command("dce"), series, out_dir=Path(tmp) / "out", mask=mask, bids=False,
                         model_options={"model": "patlak"}, **inputs).maps
    out = {k: np.asarray(maps[k]).ravel()[1:].astype(float) for k in ("Ktrans", "vp", "status")}
    out["gfr"] = out["Ktrans"] * np.array([scan["LK_vol_mL"], scan["RK_vol_mL"]])
    out["iso"] = np.array([scan["LK_iso_SK_GFR_mL_per_min"], scan["RK_iso_SK_GFR_mL_per_min"]])
    return out


def kidney_case(name: str) -> Outcome:
    """One scan: both kidneys fitted, Ktrans and vp in range."""
    r = fit_kidney(name)
    bad = [side for side, s in zip(("left", "right"), r["status"]) if s == 2]
    result = Outcome(True)
    for side, i in (("LK", 0), ("RK", 1)):
        ranged = judge_ranges({"Ktrans": r["Ktrans"][i], "vp": r["vp"][i]}, "kidney")
        ranged.message = f"{side}: {ranged.message}" if ranged.message else ""
        ranged.metrics = {f"{side} {k}": v for k, v in ranged.metrics.items()}
        result = result.merge(ranged)
    result.metrics.update({"LK SK-GFR MR (mL/min)": r["gfr"][0], "LK SK-GFR isotope (mL/min)": r["iso"][0],
                           "RK SK-GFR MR (mL/min)": r["gfr"][1], "RK SK-GFR isotope (mL/min)": r["iso"][1]})
    if bad:
        return Outcome(False, f"{' and '.join(bad)} kidney not fitted", metrics=result.metrics).merge(result)
    return result


def gfr_agreement_case() -> Outcome:
    """SK-GFR by MR (Patlak Ktrans × kidney volume) against the isotope SK-GFR over every shipped
    kidney: Pearson r >= :data:`GFR_MIN_R` and |mean difference| <= :data:`GFR_MAX_BIAS` mL/min."""
    fits = [fit_kidney(name) for name in kidney_scans()]
    mr = np.concatenate([f["gfr"] for f in fits])
    iso = np.concatenate([f["iso"] for f in fits])
    r = float(np.corrcoef(mr, iso)[0, 1])
    diff = mr - iso
    metrics = {"kidneys": int(mr.size), "Pearson r": r, "mean difference (mL/min)": float(diff.mean()),
               "SD of difference (mL/min)": float(diff.std(ddof=1)), "median MR (mL/min)": float(np.median(mr)),
               "median isotope (mL/min)": float(np.median(iso))}
    bad = []
    if not r >= GFR_MIN_R:
        bad.append(f"Pearson r {r:.3f} < {GFR_MIN_R}")
    if not abs(diff.mean()) <= GFR_MAX_BIAS:
        bad.append(f"mean difference MR - isotope {diff.mean():+.1f} mL/min beyond ±{GFR_MAX_BIAS:g}")
    return Outcome(not bad, "; ".join(bad), {"SK-GFR (mL/min), MR vs isotope": (mr, iso)}, metrics)


# ---------------------------------------------------------------------------------------------
# brain VFA: OSIPI's Edinburgh patient voxels
# ---------------------------------------------------------------------------------------------
T1_FILE = ("osipi_dce", "test", "T1_mapping", "data", "t1_brain_data.csv")


def t1_case() -> Outcome:
    """``qmri t1`` on the OSIPI brain voxels written as a NIfTI series (one voxel per row): the
    white-matter T1 median in range, R1 of every voxel within OSIPI's tolerance of the reference.
    The grey-matter and CSF medians are reported, not judged: a three-angle VFA without B1
    correction overestimates long T1s (flip-angle errors; Stikov et al. 2015), and the reference
    values of this file do too (grey matter ≈ 2.0 s, CSF ≈ 6.3 s)."""
    rows = osipi.read_rows(*T1_FILE)
    fa, tr = np.atleast_1d(rows[0]["FA"]), np.atleast_1d(rows[0]["TR"])
    if any(not np.array_equal(np.atleast_1d(r["FA"]), fa) or not np.array_equal(np.atleast_1d(r["TR"]), tr)
           for r in rows):
        raise ValueError(f"{T1_FILE[-1]}: rows with different flip angles or TR")
    signal = np.array([r["s"] for r in rows], dtype=np.float64)[:, None, None, :]
    with tempfile.TemporaryDirectory() as tmp:
        io.write_map(Path(tmp) / "vfa.nii.gz", signal)
        maps = fit_files(model_command("t1"), Path(tmp) / "vfa.nii.gz", out_dir=Path(tmp) / "out", bids=False,
                         fa=",".join(f"{a:g}" for a in fa), tr=",".join(f"{t:g}" for t in tr)).maps
    t1 = np.asarray(maps["T1"]).ravel()
    tissue = np.array([r["label"].split()[1] for r in rows])  # "brain WM voxel 1" -> WM
    ranged = judge_ranges({"WM T1": float(np.median(t1[tissue == "WM"]))}, "brain VFA")
    ranged.metrics.update({f"median {k} T1 (s), reported": float(np.median(t1[tissue == k])) for k in ("GM", "CSF")})
    agree = compare(1.0 / t1, [r["R1"] for r in rows], A_TOL, R_TOL, "R1 vs OSIPI reference", "R1 (1/s)")
    return ranged.merge(agree)


def cases() -> list[Case]:
    """The brain cases (one per command), one case per kidney scan and the SK-GFR agreement, the VFA case."""
    brain = "brain small_101D (dipy)"
    out = [
        Case(SUITE, brain, "brain-dki", dki_case),
        Case(SUITE, brain, "brain-adc", lambda: brain_case("adc", ("ADC",), bmax=LOW_BMAX)),
        Case(SUITE, brain, "brain-ivim", lambda: brain_case("ivim", ("D", "f"), bmax=LOW_BMAX, method="segmented")),
        Case(SUITE, brain, "brain-stretched", lambda: brain_case("stretched", ("DDC", "alpha"), bmax=LOW_BMAX)),
        Case(SUITE, brain, "brain-habitat", habitat_case),
    ]
    kidney = "kidney MR renography (Basak 2019)"
    try:
        names = list(kidney_scans())
    except MissingRealData as exc:
        return out + [Case(SUITE, kidney, "missing-kruk", lambda exc=exc: Outcome(False, str(exc)))]
    # one report row per scan (its values), then the agreement over all of them
    out += [Case(SUITE, f"kidney {name}", f"kidney-{name}", lambda name=name: kidney_case(name)) for name in names]
    out.append(Case(SUITE, f"{kidney}: SK-GFR vs isotope", "kidney-gfr-agreement", gfr_agreement_case))
    out.append(Case(SUITE, "brain VFA (OSIPI patient voxels)", "brain-vfa-t1", t1_case))
    return out
