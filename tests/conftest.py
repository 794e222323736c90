"""Shared test fixtures: where the OSIPI reference data live (skip clearly when absent)."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EXTERNAL = SHARED / "external"


def external(*parts) -> Path:
    """Path under ``../shared/external``; skips the test with a clear reason if it is absent."""
    p = EXTERNAL.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"reference data not found at {p} (the OSIPI data live in ../shared/external beside the repository)")
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
