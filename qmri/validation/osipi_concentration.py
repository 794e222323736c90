"""Signal to concentration (SPGR) against the OSIPI reference conversion.

Data: ``osipi_dce/test/SI_to_Conc/data/SI2Conc_data.csv`` (TF2.3 DCE-DSC-MRI code collection,
commit 40984f7). The reference conversion left the first frame out of the baseline mean
(``skip=1``); OSIPI then assesses frames 1..; here every frame, the first included, is judged.
Pass rule (OSIPI ``test/SI_to_Conc/SI2Conc_data.py``): ``|meas - ref| <= 1e-5 mM + 1e-5·|ref|``.
"""

from __future__ import annotations

from qmri.models.dce.relaxation import signal_to_concentration
from qmri.validation import osipi
from qmri.validation.cases import Case, compare, missing

SUITE = "osipi-concentration"
TITLE = "OSIPI signal to concentration"
RULES = ("SI_to_Conc CSV of the OSIPI DCE-DSC-MRI code collection (SPGR, baseline T1); pass if every frame is "
         "within 1e-5 mM + 1e-5·|ref| (OSIPI)")

FILE = ("osipi_dce", "test", "SI_to_Conc", "data", "SI2Conc_data.csv")
#: OSIPI tolerance for signal -> concentration: 1e-5 mM + 1e-5.
A_TOL, R_TOL = 1e-5, 1e-5


def check(row: dict):
    """Convert one OSIPI row's signal and judge the concentration (:class:`Outcome`)."""
    conc = signal_to_concentration(row["s"], t10=row["T1base"], r1=row["r1"], tr=row["TR"], fa=row["FA"],
                                   n_baseline=int(row["numbaselinepts"]), skip=1)
    return compare(conc, row["conc"], A_TOL, R_TOL, row["label"], "concentration (mM)")


def cases() -> list[Case]:
    """One case per row (its label)."""
    try:
        rows = osipi.read_rows(*FILE)
    except osipi.MissingReferenceData as exc:
        return [missing(SUITE, "SPGR", FILE[-1], exc)]
    return [Case(SUITE, "SPGR signal to concentration", row["label"], lambda row=row: check(row)) for row in rows]
