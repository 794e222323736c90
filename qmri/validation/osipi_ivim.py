"""IVIM against the OSIPI TF2.4 reference cases, with OSIPI's own rules and tolerances.

Data: ``osipi_ivim/tests/IVIMmodels/unit_tests/generic*.json`` (noisy normalised signals of XCAT
tissues with ground truth; TF2.4 IVIM-MRI code collection, commit f91b53c). Rules (TF2.4
``tests/IVIMmodels/unit_tests/test_ivim_fit.py``): f is always checked; D only when f < 0.8; D*
only when f > 0.03; ``|fit - truth| <= atol + rtol·|truth|`` with atol f 0.2, D 5e-4 mm²/s,
D* 0.1 mm²/s and rtol 0.1. Bounds as in the OSIPI harness. Every IVIM method whose
:class:`~qmri.models.methods.Validation` runs reference cases is checked, one voxel per case.
"""

from __future__ import annotations

import numpy as np

from qmri.validation import osipi
from qmri.validation.cases import Case, compare_parameters, missing, validated_fit

SUITE = "osipi-ivim"
TITLE = "OSIPI TF2.4 IVIM reference cases"
RULES = ("generic*.json of the TF2.4 IVIM code collection; f always checked, D when f < 0.8, D* when f > 0.03; "
         "pass if |fit - truth| <= atol + 0.1·|truth|, atol f 0.2, D 5e-4 mm²/s, D* 0.1 mm²/s (OSIPI TF2.4)")

FILES = ["generic.json", "generic_one.json", "generic_two.json", "generic_three.json", "generic_four.json",
         "generic_brain.json"]
UNIT = ("osipi_ivim", "tests", "IVIMmodels", "unit_tests")
#: OSIPI tolerances (a_tol, r_tol) by parameter.
TOLERANCES = {"f": (0.2, 0.1), "D": (5e-4, 0.1), "Dstar": (0.1, 0.1)}


def load(fname: str) -> dict:
    """One OSIPI IVIM file: ``{"config": {"bvalues": [...]}, tissue: {"f", "D", "Dp", "data", ...}}``."""
    return osipi.read_json(*UNIT, fname)


def osipi_bounds(f_true: float) -> dict:
    """The bounds of the OSIPI harness (D* lower bound 0.01 when the true f is 0)."""
    return {"S0": (0.7, 1.3), "f": (0.0, 1.0), "Dstar": (0.01 if f_true == 0 else 0.005, 0.2), "D": (0.0, 0.005)}


def check(bvalues, case: dict, method: str):
    """Fit one OSIPI tissue with ``method`` and judge it by OSIPI's rules (:class:`Outcome`)."""
    from qmri.models import IVIM

    model = IVIM(bvalues, bounds=osipi_bounds(case["f"]))
    maps = validated_fit(model, np.asarray(case["data"]), method)
    truth = {"f": case["f"], "D": case["D"], "Dstar": case["Dp"]}
    checked = ["f"] + (["D"] if truth["f"] < 0.8 else []) + (["Dstar"] if truth["f"] > 0.03 else [])
    return compare_parameters({k: float(maps[k]) for k in checked}, truth, TOLERANCES, maps.units)


def methods() -> list[str]:
    """IVIM methods checked on these cases (those whose validation runs reference cases)."""
    from qmri.models import IVIM

    return [name for name, m in IVIM.methods.items() if m.validation.reference_cases]


def cases() -> list[Case]:
    """One case per file, tissue and method (``<file>-<tissue>-<method>``)."""
    out = []
    for fname in FILES:
        try:
            d = load(fname)
        except osipi.MissingReferenceData as exc:
            out.append(missing(SUITE, "IVIM", fname, exc))
            continue
        for tissue, case in d.items():
            if tissue == "config":
                continue
            for method in methods():
                out.append(Case(SUITE, f"IVIM {method}", f"{fname}-{tissue}-{method}",
                                lambda b=d["config"]["bvalues"], c=case, m=method: check(b, c, m)))
    return out
