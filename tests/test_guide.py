"""docs/adding-a-model.md is true: its code, run as written, makes a model that the command line, the
declaration tests and ``qmri validate`` take up with nothing else edited.

The guide's Python snippets become one module (steps 1 and 2) registered by the guide's own line (step 3)
in a temporary module of that name; the declaration tests of tests/test_models_declared.py and
tests/test_declarations.py then run on it, with and without the ``dnn`` method, and so does the phantoms
suite of ``qmri validate``. The registries are restored afterwards.

Its pharmacokinetic model (the section on ``qmri dce``) is written to a temporary module too and
registered as the package registers its own (:func:`qmri.models.dce.pk.register`); the declaration
tests and fits through :class:`qmri.models.dce.DCE` then run on it.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import test_declarations as declarations
import test_models_declared as declared
from conftest import check_case
from qmri.cli.main import main
from qmri.errors import QMRIInputError
from qmri.models import MODULES
from qmri.models.base import SIGNAL_MODELS
from qmri.models.model import COMMANDS, MODEL_IDS, Model

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "adding-a-model.md"
TEXT = GUIDE.read_text()
PYTHON = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
BASH = re.findall(r"```bash\n(.*?)```", TEXT, flags=re.S)

#: The tests on the model compile its kernels and train a small network: about 15 s in all.
slow = pytest.mark.slow


@pytest.fixture(scope="module")
def guide_model(tmp_path_factory):
    """The guide's model module, registered as the guide says; registries restored after."""
    declaration, binding, registration = PYTHON[:3]
    (command, module_name), = ast.literal_eval("{" + registration + "}").items()
    path = tmp_path_factory.mktemp("guide") / "mymodel.py"
    path.write_text(declaration + "\n\n" + binding)
    saved = dict(MODULES), dict(COMMANDS), dict(SIGNAL_MODELS), dict(MODEL_IDS)
    try:
        MODULES[command] = module_name
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        yield command, module
    finally:
        sys.modules.pop(module_name, None)
        for registry, before in zip((MODULES, COMMANDS, SIGNAL_MODELS, MODEL_IDS), saved):
            registry.clear()
            registry.update(before)


@pytest.fixture(params=["with dnn", "without dnn"])
def registered(request, guide_model, monkeypatch):
    """The command name, its class (``dnn`` left out of its table for "without dnn"), and the
    declaration tests' view of the registry holding it."""
    command, module = guide_model
    cls = getattr(module, "MyModel")
    if request.param == "without dnn":
        monkeypatch.setattr(cls, "methods", {k: m for k, m in cls.methods.items() if k != "dnn"})
    monkeypatch.setitem(declarations.COMMANDS, command, cls)
    return command, cls


@slow
def test_the_registration_line_makes_the_module_a_command(guide_model):
    from qmri.models import command, commands

    name, module = guide_model
    assert command(name) is module.MyModel and name in commands()
    assert SIGNAL_MODELS[name] is module.MY_MODEL
    import qmri.models

    assert qmri.models.MyModel is module.MyModel


@slow
def test_jacobian_torch_twin_and_combined_kernel(guide_model):
    name, _ = guide_model
    declared.test_jacobian_matches_finite_differences(name)
    declared.test_numba_and_torch_signals_agree(name)
    declared.test_combined_kernel_matches_separate_kernels(name)


@slow
def test_declaration_tests_pass_on_it(registered, tmp_path, capsys):
    name, cls = registered
    declarations.test_declaration_is_complete(name)
    declarations.test_help_lists_every_method_and_option(name, capsys)
    declarations.test_noise_free_phantom_is_recovered_by_the_default_method(name)
    declarations.test_an_option_a_method_does_not_use_is_an_error(name)
    declarations.test_phantom_then_its_fit_hint_end_to_end(name, tmp_path, capsys)


@slow
def test_qmri_help_lists_it_and_train_offers_it_with_dnn(registered, capsys):
    name, cls = registered
    shown = {}
    for argv in (["--help"], ["train", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        shown[argv[0]] = " ".join(capsys.readouterr().out.split())
    assert f" {name} {cls.cli.summary} " in shown["--help"]
    assert (f" {name} networks for qmri {name} --method dnn" in shown["train"]) == ("dnn" in cls.methods)


@slow
def test_the_readme_table_gets_its_row(registered):
    from qmri.cli.reference import commands_table

    name, cls = registered
    methods = "`lsq`, `dnn`" if "dnn" in cls.methods else "`lsq`"
    table = commands_table().splitlines()
    assert f"| `qmri {name} DWI` | {cls.cli.summary} | {methods} |" in table
    train = next(row for row in table if row.startswith("| `qmri train "))
    assert (f"\\|{name} " in train) == ("dnn" in cls.methods), train


@slow
def test_every_method_recovers_its_noise_free_phantom(registered, tmp_path, monkeypatch):
    """``qmri validate --suite phantoms`` on this model (its cases, as the suite lists them): without a
    shipped network the ``dnn`` case fails as the guide says; with one made as tools/make_pretrained.py
    does (small here), every case passes."""
    from qmri.fitting.net import train
    from qmri.fitting.net import weights
    from qmri.validation import phantoms

    name, cls = registered
    cases = {c.id: c for c in phantoms.cases(models=[name])}
    assert sorted(cases) == sorted(f"{name}-{m}" for m in cls.methods)
    if "dnn" in cls.methods:
        with pytest.raises(QMRIInputError, match=f"no network shipped with qmri is trained for {cls.__name__}"):
            cases[f"{name}-dnn"].run()
        model = cls.for_phantom(cls.phantom(snr=np.inf, block=(1, 1, 1)))
        shipped = train(model, n=2000, epochs=3, seed=0, threads=1, device="cpu").save(tmp_path / f"{name}.pt")
        monkeypatch.setattr(weights, "builtin_paths", lambda: [shipped])
    for case in cases.values():
        check_case(case)
    outcome = cases[f"{name}-lsq"].run()
    assert outcome.metrics["recovery NRMSE"] <= 1e-6


def test_hooks_and_files_the_guide_names_exist():
    """Every hook the guide names is an attribute of Model or of its network facet; every file or
    folder it names exists (but the guide's new modules: its diffusion model's and its
    pharmacokinetic model's)."""
    hooks = {name for paragraph in re.split(r"\n\n|\n- ", TEXT) if "hook" in paragraph
             for name in re.findall(r"`([a-z][a-z_]+)`", paragraph)} - {"dnn"}
    assert {"normalise", "complete", "network", "bounds", "channels", "protocol"} <= hooks
    assert [name for name in sorted(hooks) if not hasattr(Model, name) and not hasattr(Model.network, name)] == []
    named = set(re.findall(r"`((?:qmri|cli|tests|tools|benchmarks|docs)/[\w./]*)`", TEXT))
    named |= set(re.findall(r"\b((?:qmri|tests|tools)/[\w/]+\.py)\b", "\n".join(BASH)))
    missing = [p for p in named if not (REPO / p).exists() and "mymodel" not in p and "onecm" not in p]
    assert len(named) > 20 and not missing, missing
    assert "qmri.models.diffusion.mymodel" in PYTHON[2]


# ---------------------------------------------------------------------------------------------
# The pharmacokinetic model of the section on qmri dce
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def guide_pk(tmp_path_factory):
    """The guide's PK module, registered; the registries restored after."""
    from qmri.models.dce import pk

    path = tmp_path_factory.mktemp("guide_pk") / "onecm.py"
    path.write_text(PYTHON[3])
    saved = dict(pk.PK_MODELS), dict(pk.DCE_MODELS), dict(SIGNAL_MODELS)
    try:
        spec = importlib.util.spec_from_file_location("guide_onecm", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["guide_onecm"] = module
        spec.loader.exec_module(module)
        yield pk.register(module.MODEL)
    finally:
        sys.modules.pop("guide_onecm", None)
        for registry, before in zip((pk.PK_MODELS, pk.DCE_MODELS, SIGNAL_MODELS), saved):
            registry.clear()
            registry.update(before)


def test_the_guide_registration_line_is_the_registry_plus_one_module():
    from qmri.models.dce import pk

    line = PYTHON[4].strip()
    assert line.startswith("MODULES = ")
    assert ast.literal_eval(line.split("=", 1)[1].strip()) == pk.MODULES + ("onecm",)


@slow
def test_pk_model_kernels_twin_and_autograd(guide_pk):
    import test_dce_models

    for name in ("dce_1cm", "dce_1cm_delay"):
        declared.test_jacobian_matches_finite_differences(name)
        declared.test_numba_and_torch_signals_agree(name)
        declared.test_combined_kernel_matches_separate_kernels(name)
    for key in (("1cm", False), ("1cm", True)):
        test_dce_models.test_torch_autograd_matches_analytic_jacobian(key)


@slow
@pytest.mark.parametrize("fit_delay", [False, True])
def test_pk_model_fits_through_dce(guide_pk, fit_delay):
    """DCE takes the registered model: lsq recovers noise-free curves from its linear start; the
    linear method is near; the network prior is the declared one."""
    from qmri.models.dce import DCE
    from qmri.models.dce.models import example_aif

    t = np.concatenate([np.arange(0.0, 60.0, 2.0), 60.0 + np.cumsum(np.linspace(3.0, 9.0, 30))])
    ta = np.arange(0.0, t[-1] + 0.7, 0.7)
    m = DCE(t, example_aif(ta), "1cm", fit_delay=fit_delay, aif_times=ta)
    assert m.spec.names == (["Fp", "ve", "delay"] if fit_delay else ["Fp", "ve"])
    truth = {"Fp": np.array([10.0, 40.0, 90.0]), "ve": np.array([0.1, 0.3, 0.5]), "delay": np.array([2.0, -3.0, 4.5])}
    if not fit_delay:
        truth["delay"] = np.zeros(3)
    conc = m.concentration(truth)
    res = m.fit(conc, method="lsq")
    for k in m.spec.names:
        np.testing.assert_allclose(res[k], truth[k], rtol=1e-5, atol=1e-6, err_msg=k)
    lin = m.fit(conc, method="linear")
    np.testing.assert_allclose(lin["Fp"], truth["Fp"], rtol=0.05)
    P = m.network.sample(2000, np.random.default_rng(0))
    assert P[:, 0].min() >= 1.0 and P[:, 0].max() <= 150.0 and P[:, 1].min() >= 0.01 and P[:, 1].max() <= 0.7
