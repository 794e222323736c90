"""DCE pharmacokinetic models against the OSIPI DCE code-collection reference cases.

Data: ``osipi_dce/test/DCEmodels/data/*.csv`` (TF2.3 DCE-DSC-MRI code collection, commit 40984f7):
the QIBA/Bosca Tofts and extended Tofts DROs and the Patlak, 2CXM and 2CUM cases with and without
an arterial delay. Each row is fitted with the delay fixed at 0 (undelayed rows only) and with the
delay fitted; the QIBA/Bosca files have no delayed version, so, as OSIPI's loaders do, a delayed
copy is made by shifting the tissue curve by 10 samples (Tofts, 5 s) or 5 samples (extended Tofts,
5 s). Pass rule (OSIPI ``test/DCEmodels``): the fit converged and every parameter is within
``a_tol + r_tol·|ref|`` of :data:`TOLERANCES`.
"""

from __future__ import annotations

import numpy as np

from qmri.models.dce import DCE
from qmri.validation import osipi
from qmri.validation.cases import Case, Outcome, compare_parameters, missing, validated_fit

SUITE = "osipi-dce"
TITLE = "OSIPI DCE pharmacokinetic models"
RULES = ("DCEmodels CSVs of the OSIPI DCE-DSC-MRI code collection (Tofts, extended Tofts, Patlak, 2CXM, 2CUM; "
         "delay fixed at 0 and fitted); pass if converged and |fit - ref| <= a_tol + r_tol·|ref| per parameter: "
         "Ktrans and PS 0.005 /min + 10 %, ve 0.05, vp 0.025, Fp 5 mL/min/100mL + 10 %, delay 1 s (OSIPI)")

DATA = ("osipi_dce", "test", "DCEmodels", "data")

#: OSIPI code-collection tolerances (a_tol, r_tol): pass if |meas - ref| <= a_tol + r_tol |ref|.
TOLERANCES = {"Ktrans": (0.005, 0.1), "PS": (0.005, 0.1), "ve": (0.05, 0.0), "vp": (0.025, 0.0),
              "Fp": (5.0, 0.1), "delay": (1.0, 0.0)}

#: Files: (file, model, our parameter -> column, tissue column, AIF column, samples shifted for a
#: delayed copy).
FILES = [
    ("dce_DRO_data_tofts.csv", "tofts", {"Ktrans": "Ktrans", "ve": "ve"}, "C", "ca", 10),
    ("dce_DRO_data_extended_tofts.csv", "etm", {"Ktrans": "Ktrans", "ve": "ve", "vp": "vp"}, "C", "ca", 5),
    ("patlak_sd_0.02_delay_0.csv", "patlak", {"Ktrans": "ps", "vp": "vp"}, "C_t", "cp_aif", None),
    ("patlak_sd_0.02_delay_5.csv", "patlak", {"Ktrans": "ps", "vp": "vp"}, "C_t", "cp_aif", None),
    ("2cxm_sd_0.001_delay_0.csv", "2cxm", {"Fp": "fp", "PS": "ps", "ve": "ve", "vp": "vp"}, "C_t", "cp_aif", None),
    ("2cxm_sd_0.001_delay_5.csv", "2cxm", {"Fp": "fp", "PS": "ps", "ve": "ve", "vp": "vp"}, "C_t", "cp_aif", None),
    ("2cum_sd_0.0025_delay_0.csv", "2cum", {"Fp": "fp", "PS": "ps", "vp": "vp"}, "C_t", "cp_aif", None),
    ("2cum_sd_0.0025_delay_5.csv", "2cum", {"Fp": "fp", "PS": "ps", "vp": "vp"}, "C_t", "cp_aif", None),
]

#: Cases that cannot pass, ``(file, label, fit_delay, method)``: the measured value and the reason.
EXPECTED_FAILURES = {
    ("2cxm_sd_0.001_delay_0.csv", "case_14", True, "lsq"):
        "PS 0.1775 /min vs reference 0.15 (limit 0.02): with the delay free (fitted 0.04 s) the "
        "least-squares optimum itself lies there (LM started at the reference converges to the same "
        "point; SSR 6.20e-4 vs 6.25e-4 at the reference), Fp = 5 mL/min/100mL leaves PS poorly determined",
}


def _delay(row) -> float:
    return float(row.get("arterial_delay", row.get("arterialdelay", 0.0)))


def check(spec, row: dict, fit_delay: bool, method: str) -> Outcome:
    """Fit one OSIPI row (``spec`` an entry of :data:`FILES`) and judge it by the OSIPI tolerances."""
    _, model, cols, ccol, acol, nshift = spec
    t, c, ca = row["t"], row[ccol], row[acol]
    ref = {ours: float(row[theirs]) for ours, theirs in cols.items()}
    ref["delay"] = _delay(row)
    if fit_delay and nshift:
        c = np.concatenate([np.zeros(nshift), c[:-nshift]])
        ref["delay"] = nshift * (t[1] - t[0])
    maps = validated_fit(DCE(t, ca, model, fit_delay=fit_delay), c[None, :], method)
    status = int(maps["status"][0])
    meas = {k: float(maps[k][0]) for k in ref if k != "delay" or fit_delay}
    out = compare_parameters(meas, ref, TOLERANCES, maps.units)
    if status != 0:
        out.passed = False
        out.message = "; ".join(x for x in (f"fit did not converge (status {status})", out.message) if x)
    return out


def methods() -> list[str]:
    """DCE methods held to these cases (those whose validation runs reference cases)."""
    return [name for name, m in DCE.methods.items() if m.validation.reference_cases]


def rows(fname: str) -> list[dict]:
    """Rows of one DCEmodels file (:func:`qmri.validation.osipi.read_rows`)."""
    return osipi.read_rows(*DATA, fname)


def cases() -> list[Case]:
    """One case per row, delay fixed (undelayed rows) or fitted, and method
    (``<file stem>-<label>-delay|nodelay``, ``-<method>`` added for other methods than the default)."""
    out = []
    for spec in FILES:
        fname, model = spec[0], spec[1]
        try:
            table = rows(fname)
        except osipi.MissingReferenceData as exc:
            out.append(missing(SUITE, f"DCE {model}", fname, exc))
            continue
        for row in table:
            for fit_delay in (False, True):
                if _delay(row) != 0.0 and not fit_delay:
                    continue  # a delayed curve needs the delay fitted
                for method in methods():
                    cid = f"{fname[:-4]}-{row['label']}-{'delay' if fit_delay else 'nodelay'}"
                    if method != DCE.default_method:
                        cid += f"-{method}"
                    out.append(Case(SUITE, f"DCE {model} {method}", cid,
                                    lambda s=spec, r=row, d=fit_delay, m=method: check(s, r, d, m),
                                    EXPECTED_FAILURES.get((fname, row["label"], fit_delay, method), "")))
    return out
