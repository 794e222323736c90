"""The declared layers (``[tool.importlinter]`` of pyproject.toml) hold, and ``qmri --help`` starts light."""

from __future__ import annotations

import ast
import functools
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


# --- Function-level imports: only where a module-level import would cost something -----------------

#: Third-party packages that are slow to import (0.1-2 s each, measured) or optional: the only ones a
#: module may import inside a function for their own sake.
HEAVY = frozenset({"torch", "numba", "llvmlite", "matplotlib", "nibabel", "dask", "distributed", "sklearn",
                   "scipy", "skimage", "pandas", "dipy", "shap", "skops", "neuroHarmonize", "bidsschematools"})


class _ImportGraph:
    """The import statements of qmri and its command line, read from the source: for each module, what
    it imports at module level (run on import) and, separately, inside functions (run when called).
    ``if TYPE_CHECKING:`` blocks run never and count as neither."""

    def __init__(self):
        self.files = {}
        for folder, package in ((ROOT / "qmri", "qmri"), (ROOT / "cli", "qmri.cli"), (ROOT / "phantoms", "qmri.phantoms")):
            for path in folder.rglob("*.py"):
                parts = list(path.relative_to(folder).with_suffix("").parts)
                self.files[".".join([package] + (parts[:-1] if parts[-1] == "__init__" else parts))] = path
        self.top = {m: set() for m in self.files}
        self.lazy = {m: [] for m in self.files}  # (line, targets, inside a try block)
        for name, path in self.files.items():
            self._walk(ast.parse(path.read_text(), str(path)).body, name, path.name == "__init__.py", False, False)

    def _walk(self, body, name, is_package, in_function, in_try):
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets = self._targets(node, name, is_package)
                if in_function:
                    self.lazy[name].append((node.lineno, targets, in_try))
                else:
                    self.top[name] |= targets
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self._walk(node.body, name, is_package, True, False)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            else:
                for block in ("body", "orelse", "finalbody"):
                    if isinstance(getattr(node, block, None), list):
                        self._walk(getattr(node, block), name, is_package, in_function,
                                   in_try or (isinstance(node, ast.Try) and block == "body"))
                for handler in getattr(node, "handlers", []):
                    self._walk(handler.body, name, is_package, in_function, True)

    def _with_packages(self, module):
        if module == "cli" or module.startswith("cli."):
            module = "qmri.cli" + module[3:]
        parts = module.split(".")
        if parts[0] != "qmri":
            return {parts[0]}
        return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(self.files)

    def _targets(self, node, name, is_package):
        if isinstance(node, ast.Import):
            return set().union(*(self._with_packages(a.name) for a in node.names))
        if node.level:
            base = name.split(".")[: None if is_package else -1]
            module = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
        else:
            module = node.module
        out = self._with_packages(module)
        for a in node.names:  # `from package import submodule`
            out |= self._with_packages(f"{module}.{a.name}") if f"{module}.{a.name}" in self.files else set()
        return out

    def loaded(self, modules):
        """Every module that importing ``modules`` runs (their packages first), by module-level imports."""
        seen, todo = set(), list(modules)
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(self.top.get(m, ()))
                todo.extend(".".join(m.split(".")[:i]) for i in range(1, m.count(".") + 1))
        return seen

    def heavy(self, modules):
        return self.loaded(modules) & HEAVY


@functools.cache
def _start_up_paths() -> dict[str, frozenset[str]]:
    """What each start-up path loads, as Python runs it: ``qmri --version`` (the main module), ``qmri
    --help``, ``qmri <command> --help`` for every command, ``import qmri.models``."""
    names = subprocess.run([sys.executable, "-c", "from qmri.models import MODULES; from qmri.cli.main import "
                            "COMMANDS, _command; print(' '.join(list(MODULES) + [_command(c) for c in COMMANDS]))"],
                           capture_output=True, text=True, timeout=120, check=True).stdout.split()
    bodies = {"qmri --version": "pass", "qmri --help": "build_parser()", "import qmri.models": "import qmri.models"}
    bodies |= {f"qmri {n} --help": f"build_parser({n!r})" for n in names}
    runs = {path: subprocess.Popen([sys.executable, "-c", "import sys\nfrom qmri.cli.main import build_parser\n"
                                    f"{body}\nprint(' '.join(sys.modules))"], stdout=subprocess.PIPE, text=True)
            for path, body in bodies.items()}
    out = {}
    for path, run in runs.items():
        stdout, _ = run.communicate(timeout=120)
        assert run.returncode == 0, path
        out[path] = frozenset(stdout.split())
    return out


def _lazy_attribute(graph, module, line):
    """Whether the import at ``line`` of ``module`` takes a name that the package imported from gives only
    through its module ``__getattr__`` (e.g. ``qmri.models.COMMANDS``, which imports every model)."""
    tree = ast.parse(graph.files[module].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.lineno == line and node.level == 0:
            source = graph._with_packages(node.module)
            source = max(source, key=len) if source else None
            if source not in graph.files:
                return False
            body = ast.parse(graph.files[source].read_text()).body
            if not any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in body):
                return False
            defined = {n.name for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            defined |= {t.id for n in body for t in ast.walk(n) if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)
                        and not isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            defined |= {a.asname or a.name.split(".")[0] for n in body if isinstance(n, (ast.Import, ast.ImportFrom))
                        for a in n.names}
            return any(a.name not in defined and f"{source}.{a.name}" not in graph.files for a in node.names)
    return False


def test_function_level_imports_are_only_where_a_module_level_one_would_cost():
    """An import inside a function hides a layer from the reader, so qmri keeps one only for a reason the
    import graph shows: the module imported loads a slow package (HEAVY) that the importing module does not;
    or the importing module is on a start-up path (``qmri --version``, ``qmri --help``, ``qmri <command>
    --help``, ``import qmri.models``) and the import would add to what that path loads; or the imported
    module already imports the importing one at module level (a cycle inside one layer; across layers
    import-linter refuses it); or the name is one a package gives lazily (its module ``__getattr__``).
    Optional packages may also be imported in a ``try``. Anything else belongs at the top of the module."""
    graph = _ImportGraph()
    paths = [{m for m in loaded if m in graph.files or "." not in m} for loaded in _start_up_paths().values()]
    unjustified = []
    for module, imports in graph.lazy.items():
        for line, targets, in_try in imports:
            own = {t for t in targets if t.startswith("qmri")}
            third = targets - own
            if third and (third & HEAVY or in_try):
                continue
            if own and module in graph.loaded(own):
                continue  # a cycle
            if graph.heavy(targets) - graph.heavy({module}):
                continue  # brings in a slow package
            if any(module in path and graph.loaded(targets) - path for path in paths):
                continue  # would slow a start-up path
            if _lazy_attribute(graph, module, line):
                continue
            unjustified.append(f"{graph.files[module].relative_to(ROOT)}:{line} {sorted(targets)}")
    assert unjustified == []


def test_help_loads_no_file_reading_or_analysis_module():
    """``qmri --help`` lists the commands from their declarations: none of qmri's file, map, figure,
    habitat, statistics, cohort or validation modules is imported for it."""
    loaded = _start_up_paths()["qmri --help"]
    late = ("qmri.io", "qmri.maps", "qmri.resultset", "qmri.naming", "qmri.plot", "qmri.habitats", "qmri.roistats",
            "qmri.outcomestats", "qmri.cohort", "qmri.validation", "qmri.simulate")
    assert sorted(m for m in loaded if m.startswith(late)) == []


def test_the_import_graph_reads_what_python_runs():
    """The graph of the tests above against the interpreter: what ``import qmri.models`` loads of qmri,
    read from the source, is what Python loads."""
    ran = {m for m in _start_up_paths()["import qmri.models"] if m.startswith("qmri")}
    expected = _ImportGraph().loaded({"qmri.models", "qmri.cli.main"})
    assert {m for m in expected if m.startswith("qmri")} == ran
