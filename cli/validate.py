"""``qmri validate``: run the reference suites (OSIPI cases, real acquisitions, phantoms of every model and
method) on this installation and write a report, one library call (:func:`qmri.validation.validate`)."""

from __future__ import annotations

import sys
from pathlib import Path

#: Row of the README's command table.
USAGE = "qmri validate [--out-dir qmri_validation] [--suite NAME ...] [--force]"
SUMMARY = ("check this installation against the OSIPI reference cases, real acquisitions and every model's phantom: "
           "Markdown + PNG report, exit 1 on a failure")


def add_parser(sub):
    from qmri.validation.runner import SUITES

    p = sub.add_parser("validate", help=SUMMARY, description=(
        "Run the reference suites on this installation: the OSIPI IVIM and DCE cases (shipped with qmri; OSIPI "
        "rules and tolerances), real scanner data through the commands (physiological ranges, agreement with "
        "dipy, isotope GFR and OSIPI references) and the phantom of every model fitted by every method (exact "
        "without noise, accuracy at the phantom's SNR). Writes validation.md and one PNG per suite; exits 1 if a "
        "case fails (expected failures, listed with their reason, do not count)."))
    p.add_argument("--out-dir", type=Path, default=Path("qmri_validation"),
                   help="report folder (default qmri_validation)")
    p.add_argument("--suite", nargs="+", choices=list(SUITES), metavar="NAME",
                   help=f"run only these suites: {', '.join(SUITES)} (default all)")
    p.add_argument("--force", action="store_true", help="overwrite an earlier report")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from qmri.validation import validate

    result = validate(args.out_dir, args.suite, force=args.force, echo=print)
    if result.failures:
        print(f"qmri: {result.summary()}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0
