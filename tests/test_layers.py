"""The declared layers (``[tool.importlinter]`` of pyproject.toml) hold, and ``qmri --help`` starts light."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports() -> str | None:
    """The ``lint-imports`` of this interpreter's environment (None when import-linter is absent)."""
    try:
        import importlinter  # noqa: F401
    except ImportError:
        return None
    script = Path(sys.executable).parent / "lint-imports"
    return str(script) if script.is_file() else shutil.which("lint-imports")


def test_import_contracts_are_kept():
    """Every import statement of qmri and the command line, function-level ones included, follows the
    layers and the habitat analysis' independence declared in pyproject.toml."""
    script = _lint_imports()
    if script is None:
        pytest.skip("import-linter is not installed (pip install -e .[test])")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([script, "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout, r.stdout


def test_help_imports_no_heavy_package():
    """``qmri --help`` builds the parser from the declarations without the numeric, plotting, imaging or
    cluster packages (they are imported when a command runs)."""
    heavy = ("torch", "numba", "matplotlib", "nibabel", "dask", "distributed", "sklearn")
    code = ("import sys\nfrom qmri.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout
