"""Every registered command, from its declaration alone: help, methods, phantom, exact recovery and the
command line end to end. A new model module gets these tests without editing this file."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qmri.cli.main import main
from qmri.errors import QMRIInputError
from qmri.models import COMMANDS
from qmri.options import Option

REPO = Path(__file__).resolve().parents[1]
WITH_PHANTOM = [name for name, cls in COMMANDS.items() if cls.has_phantom()]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_declaration_is_complete(name):
    cls = COMMANDS[name]
    assert cls.cli.summary and cls.cli.description and cls.workflow
    assert cls.methods and cls.default_method in cls.methods
    for method in cls.methods.values():
        assert method.description, method.name
        assert all(isinstance(o, Option) and o.help for o in method.options)
    assert all(isinstance(o, Option) and o.help for o in cls.options)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_lists_every_method_and_option(name, capsys):
    cls = COMMANDS[name]
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for method in cls.methods:
        assert f"{method}:" in out
    for opt in cls.options:
        assert opt.cli_flag in out


def test_command_reference_in_readme_is_generated():
    from qmri.cli.reference import END, START, commands_table

    text = (REPO / "README.md").read_text()
    table = text[text.index(START) + len(START):text.index(END)].strip()
    assert table == commands_table(), "run: python -m qmri.cli.reference README.md"


@pytest.mark.parametrize("name", WITH_PHANTOM)
def test_noise_free_phantom_is_recovered_by_the_default_method(name):
    cls = COMMANDS[name]
    ph = cls.phantom(snr=np.inf, block=(2, 2, 1))
    for label, model, data, mask, method in cls.demo.cases(ph):
        if method != type(model).default_method:
            continue
        maps = model.fit(data, mask=mask, method=method)
        for k in cls.demo.parameters:
            if k in maps.params:
                np.testing.assert_allclose(maps[k][mask], ph.truth[k][mask], rtol=2e-4, atol=1e-7,
                                           err_msg=f"{name} {label} {k}")


@pytest.mark.parametrize("name", WITH_PHANTOM)
def test_phantom_then_its_fit_hint_end_to_end(name, tmp_path, capsys):
    """``qmri phantom <name>`` writes the phantom and prints a command that fits it; that command
    writes every declared output."""
    ph_dir = tmp_path / "ph"
    assert main(["phantom", name, "--out-dir", str(ph_dir), "--snr", "inf", "--block", "2", "2", "1"]) == 0
    out = capsys.readouterr().out
    hint = next(line for line in out.splitlines() if line.startswith("fit it with: "))[len("fit it with: "):]
    argv = shlex.split(hint.replace("FIT", str(tmp_path / "fit")))
    assert argv[0] == "qmri"
    assert main(argv[1:] + ["--quiet"]) == 0, capsys.readouterr().err
    cls = COMMANDS[name]
    for f in ph_dir.iterdir():
        assert f.stat().st_size > 0
    written = {p.name for p in (tmp_path / "fit").iterdir()}
    status = [n for n in written if n.endswith("status.nii.gz")]
    assert status, f"{cls.__name__}: no status map in {sorted(written)}"
    for opt_free in ("rmse", "r2", "n_iter"):
        assert f"{opt_free}.nii.gz" in written


@pytest.mark.parametrize("name", WITH_PHANTOM)
def test_an_option_a_method_does_not_use_is_an_error(name):
    cls = COMMANDS[name]
    ph = cls.phantom(snr=np.inf, block=(1, 1, 1))
    _, model, data, mask, _ = cls.demo.cases(ph)[0]
    for method in type(model).methods.values():
        if "compute_se" not in {o.name for o in method.options}:
            with pytest.raises(QMRIInputError, match=f"method {method.name!r} of .* does not use option 'compute_se'"):
                model.fit(data, mask=mask, method=method.name, compute_se=True)


def test_unknown_method_and_option_from_fit():
    from qmri.models import IVIM

    b = np.array([0, 10, 20, 50, 100, 200, 400, 600, 800, 1000.0])
    model = IVIM(b)
    sig = model.signal(dict(S0=1000.0, f=0.1, D=1e-3, Dstar=0.02))[None]
    with pytest.raises(QMRIInputError, match="unknown method 'nope'.*lsq, segmented"):
        model.fit(sig, method="nope")
    with pytest.raises(QMRIInputError, match="'segmented' of IVIM does not use option 'compute_se' \\(--se\\)"):
        model.fit(sig, method="segmented", compute_se=True)
    assert "Dstar_se" in model.fit(sig, method="lsq", compute_se=True)


def test_se_with_a_method_without_standard_errors_is_refused_by_the_command_line(tmp_path, capsys):
    ph = tmp_path / "ph"
    assert main(["phantom", "ivim", "--out-dir", str(ph), "--block", "2", "2", "1"]) == 0
    code = main(["ivim", str(ph / "ivim.nii.gz"), "--bval", str(ph / "ivim.bval"), "--method", "segmented", "--se",
                 "--out-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "does not use option 'compute_se' (--se)" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_new_method_plugs_in_without_editing_anything():
    """A method added to a model's table is offered by fit(), listed by --help and rejected options
    are errors: no dispatch on names anywhere."""
    from qmri.fitting.result import FitResult
    from qmri.models import ADC
    from qmri.models.methods import Method

    def fit_constant(model, Y, C, value=1.0):
        n = Y.shape[0]
        P = np.tile([1.0, float(value)], (n, 1))
        return FitResult.closed_form(model.spec.names, P, np.zeros(n, np.int8), np.zeros(n), np.zeros(n))

    class Sub(ADC):
        pass

    Sub.add_method(Method("const", "constant ADC (test)", fit_constant,
                          options=(Option("value", "the ADC to return", float, 1e-3),)))
    assert "const" in Sub.methods and "const" not in ADC.methods
    maps = Sub([0, 500, 1000]).fit(np.ones((3, 3)), method="const", value=2e-3)
    np.testing.assert_allclose(maps["ADC"], 2e-3)
    with pytest.raises(QMRIInputError, match="does not use option 'compute_se'"):
        Sub([0, 500, 1000]).fit(np.ones((3, 3)), method="const", compute_se=True)


def test_source_checkout_imports_the_command_line_without_installation():
    """From the repository root, with no site-packages at all, ``qmri.cli`` and ``qmri.phantoms`` import
    from the source folders (cli/, phantoms/)."""
    code = "import qmri.cli.main, qmri.phantoms; print(qmri.cli.main.__file__); print(list(qmri.phantoms.__path__)[0])"
    r = subprocess.run([sys.executable, "-S", "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cli_file, phantoms_dir = r.stdout.split()
    assert Path(cli_file) == REPO / "cli" / "main.py"
    assert Path(phantoms_dir) == REPO / "phantoms"
