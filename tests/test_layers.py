"""The declared layers (``[tool.importlinter]`` of pyproject.toml) hold, and ``qmri --help`` starts light."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
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
    r = subprocess.run([script, "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout, r.stdout


def test_every_module_of_qmri_is_in_a_layer():
    """A new module or package of qmri is placed in the layers (else no contract would check it)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    named = {m.strip() for layer in layers for m in layer.replace(":", "|").split("|")}
    modules = {f"qmri.{p.stem}" for p in (ROOT / "qmri").glob("*.py") if p.stem != "__init__"}
    modules |= {f"qmri.{p.parent.name}" for p in (ROOT / "qmri").glob("*/__init__.py")}
    assert modules - named == set()


def test_the_library_never_imports_the_command_line():
    """qmri.cli is the top layer. The contracts analyse the command line as the source folder cli/, where
    an import of qmri.cli from the library would not show; this reads the library's imports directly."""
    bad = []
    for path in sorted((ROOT / "qmri").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            if any(n == "qmri.cli" or n.startswith("qmri.cli.") for n in names):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert bad == []


def test_help_imports_no_plotting_imaging_or_learning_package():
    """``qmri --help`` builds the parser from the declarations without matplotlib, nibabel or scikit-learn
    (imported when a command runs; torch, Numba and Dask: tests/test_dnn.py and tests/test_cohort.py)."""
    heavy = ("matplotlib", "nibabel", "sklearn")
    code = ("import sys\nfrom qmri.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout
