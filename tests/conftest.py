"""Shared test fixtures: the OSIPI reference data (vendored in tests/data/osipi), running the console script."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: OSIPI reference data read by the tests, copied into the repository (see tests/data/osipi/NOTICE).
EXTERNAL = REPO / "tests" / "data" / "osipi"


def external(*parts) -> Path:
    """Path of a vendored OSIPI file under ``tests/data/osipi``; fails the test, naming the file, if
    it is absent (it is part of the repository: a missing file is a broken checkout, not a reason
    to skip)."""
    p = EXTERNAL.joinpath(*parts)
    if not p.exists():
        pytest.fail(f"OSIPI reference data missing: {p} (vendored in tests/data/osipi; see its NOTICE)")
    return p


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
