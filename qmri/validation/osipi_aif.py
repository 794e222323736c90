"""Population AIFs against the OSIPI reference curves.

Data: ``osipi_dce/test/PopulationAIF_DCE/data/*.csv`` (TF2.3 DCE-DSC-MRI code collection, commit
40984f7), one curve per label. Pass rule (OSIPI ``test/PopulationAIF_DCE/popAIF_data.py``):
``|meas - ref| <= 1e-4 mM + 1 %·|ref|`` at every point; OSIPI allows 0.1 mM + 10 % for the
Parker curves with delay because implementations that resample a sampled curve differ there: the
analytic delay is held to the strict rule, delaying the sampled curve by interpolation
(:func:`qmri.models.dce.aif.shift`) to the resampling one. The Parker and Georgiou references hold
whole blood (``hct = 0`` returns Cb unchanged) and give time in minutes; the preclinical ones in s.
"""

from __future__ import annotations

from qmri.models.dce import aif
from qmri.validation import osipi
from qmri.validation.cases import Case, compare, missing

SUITE = "osipi-aif"
TITLE = "OSIPI population AIFs"
RULES = ("PopulationAIF_DCE CSVs of the OSIPI DCE-DSC-MRI code collection (Parker, Georgiou, preclinical, with "
         "delays); pass if every point is within 1e-4 mM + 1 % (0.1 mM + 10 % for a sampled curve delayed by "
         "interpolation) (OSIPI)")

DATA = ("osipi_dce", "test", "PopulationAIF_DCE", "data")
#: OSIPI tolerances for population AIFs: 1e-4 mM + 1 %.
A_TOL, R_TOL = 1e-4, 0.01
#: OSIPI tolerances for the Parker curves with delay, for implementations that resample.
A_TOL_RESAMPLED, R_TOL_RESAMPLED = 0.1, 0.1

#: Georgiou et al. publish the curve itself (supplementary table, 0.1 s sampling; the OSIPI
#: reference resamples it) and a functional form with parameters rounded to 2–4 digits (Table 3).
#: qmri evaluates the functional form, which departs from the table by more than 1e-4 mM + 1 % on
#: the up-slope (t = 0.7–6 s; up to +5 % of the still small early values) and around the first
#: trough (t = 14–20 s); the largest absolute difference is 0.082 mM at t = 5.4 s (0.9 % of the
#: 8.65 mM peak). Measured with hct = 0 (worst point relative to the tolerance):
GEORGIOU_MEASURED = {
    "original_AIF": "114/3001 points; worst t=4.1 s: 4.2883 vs 4.2214 mM (+1.59 %)",
    "temp_res_0.5s": "23/600 points; worst t=4.0 s: 4.0574 vs 3.9928 mM (+1.62 %)",
    "temp_res_1.0s": "12/300 points; worst t=4.0 s: 4.0574 vs 3.9928 mM (+1.62 %)",
    "temp_res_2.0s": "6/150 points; worst t=4.0 s: 4.0574 vs 3.9928 mM (+1.62 %)",
    "temp_res_2.5s": "5/120 points; worst t=5.0 s: 6.2533 vs 6.1730 mM (+1.30 %)",
    "temp_res_5.0s": "3/60 points; worst t=5.0 s: 6.2533 vs 6.1730 mM (+1.30 %)",
    "temp_res_7.5s": "1/40 points; worst t=15.0 s: 2.6537 vs 2.6847 mM (-1.15 %)",
}


def _parker(c):
    return aif.parker(c["time"] * 60.0, hct=0.0, delay=c["delay"])


def _parker_shifted(c):
    t = c["time"] * 60.0
    return aif.shift(t, aif.parker(t, hct=0.0), c["delay"])


def _georgiou(c):
    return aif.georgiou(c["time"] * 60.0, hct=0.0)


def _preclinical(c):
    return aif.preclinical(c["time"], delay=c["delay"])


#: (key, group, file, curve function, (a_tol, r_tol), expected failures by label).
CURVES = [
    ("parker", "Parker", "ParkerAIF_ref.csv", _parker, (A_TOL, R_TOL), {}),
    ("parker-delay", "Parker, delayed", "ParkerAIF_ref_with_delay.csv", _parker, (A_TOL, R_TOL), {}),
    ("parker-shift", "Parker, sampled curve shifted", "ParkerAIF_ref_with_delay.csv", _parker_shifted,
     (A_TOL_RESAMPLED, R_TOL_RESAMPLED), {}),
    ("georgiou", "Georgiou", "GeorgiouAIF_ref.csv", _georgiou, (A_TOL, R_TOL),
     {label: "functional form with the rounded Table 3 parameters vs the published curve: " + measured
      for label, measured in GEORGIOU_MEASURED.items()}),
    ("preclinical", "preclinical", "preclinicalAIF_ref.csv", _preclinical, (A_TOL, R_TOL), {}),
    ("preclinical-delay", "preclinical, delayed", "preclinicalAIF_ref_delay.csv", _preclinical, (A_TOL, R_TOL), {}),
]


def cases() -> list[Case]:
    """One case per curve (label) of each file and way of computing it (``<key>-<label>``)."""
    out = []
    for key, group, fname, curve, (a_tol, r_tol), expected in CURVES:
        try:
            curves = osipi.read_curves(*DATA, fname)
        except osipi.MissingReferenceData as exc:
            out.append(missing(SUITE, group, fname, exc))
            continue
        for c in curves:
            out.append(Case(SUITE, group, f"{key}-{c['label']}",
                            lambda c=c, f=curve, a=a_tol, r=r_tol: compare(f(c), c["Cb"], a, r, c["label"],
                                                                         "concentration (mM)"),
                            expected.get(c["label"], "")))
    return out
