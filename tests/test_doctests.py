"""Every example in the docstrings of the qmri package (``qmri``, ``qmri.cli``, ``qmri.phantoms``) runs as
written and prints what it shows (doctest).

Modules are found by reading the source files: only those whose text holds an example (``>>>``) are
imported, and only when their test runs, so collection imports nothing heavy. A module that needs an
optional package that is absent is skipped, naming the package.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import io
from pathlib import Path

import pytest

#: The package and the folders installed inside it (see qmri/__init__.py).
PACKAGES = ("qmri", "qmri.cli", "qmri.phantoms")


def _modules_with_examples() -> list[str]:
    names = []
    for package in PACKAGES:
        root = Path(importlib.util.find_spec(package).submodule_search_locations[0])
        for path in sorted(root.rglob("*.py")):
            if ">>>" not in path.read_text(encoding="utf-8"):
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            names.append(".".join([package, *parts]))
    return names


MODULES = _modules_with_examples()


def test_examples_are_found():
    """The search finds the model classes' examples (an empty list would pass every module silently)."""
    assert "qmri.models.diffusion.ivim" in MODULES and "qmri.models.dce.model" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] != "qmri":
            pytest.skip(f"{name} needs the optional package {exc.name!r}")
        raise
    tests = [t for t in doctest.DocTestFinder().find(module, name) if t.examples]
    assert tests, f"{name}: '>>>' in its source but no docstring example found"
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test, out=out.write)
    assert runner.failures == 0, out.getvalue()
