"""Shared test fixtures: the OSIPI reference data (shipped in qmri/validation/data/osipi), the validation
cases as test parameters, running the console script."""

from pathlib import Path

import pytest

from qmri.validation.osipi import OSIPI, MissingReferenceData, existing

REPO = Path(__file__).resolve().parents[1]
#: OSIPI reference data, shipped with the package (see qmri/validation/data/osipi/NOTICE).
EXTERNAL = OSIPI


def external(*parts) -> Path:
    """Path of a shipped OSIPI file under ``qmri/validation/data/osipi``; fails the test, naming the
    file, if it is absent (it is part of the package: a missing file is a broken checkout, not a
    reason to skip)."""
    try:
        return existing(*parts)
    except MissingReferenceData as exc:
        pytest.fail(str(exc))


def case_params(cases):
    """Validation cases (:class:`qmri.validation.cases.Case`) as ``pytest.param``s with their ids; an
    expected failure is a strict xfail with its reason (it must fail by its rule, not crash)."""
    return [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, raises=AssertionError,
                                                              reason=c.expected_failure)] if c.expected_failure else [])
            for c in cases]


def check_case(case):
    """Run a validation case and assert that it passed, with its message."""
    outcome = case.run()
    assert outcome.passed, outcome.message


def run_qmri(*args, cwd=None):
    """Run the installed ``qmri`` console script in a subprocess, from outside the source tree.

    (From the repository root, ``python -m qmri.cli`` would import the source folder ``qmri/``,
    which does not contain the ``cli`` package: it is mapped in only at installation.)
    """
    import subprocess
    import sys
    import tempfile

    script = Path(sys.executable).parent / "qmri"
    return subprocess.run([str(script), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or tempfile.gettempdir())
