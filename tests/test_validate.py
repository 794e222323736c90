"""``qmri validate``: the report, failures named, expected failures apart, methods' declarations honoured,
the shipped reference data found by an installed (non-editable) qmri."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qmri.cli.main import main
from qmri.models import ADC, COMMANDS, IVIM
from qmri.models.methods import Method, Validation
from qmri.options import Option
from qmri.validation import SUITES, osipi, osipi_aif, osipi_ivim, phantoms
from qmri.validation.runner import run_suite

from conftest import REPO

PNG = b"\x89PNG\r\n\x1a\n"


def test_validate_writes_the_report_and_exits_0(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["validate", "--suite", "osipi-concentration", "osipi-aif", "phantoms", "--out-dir", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert f"report: {out / 'validation.md'}" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["osipi-aif.png", "osipi-concentration.png", "phantoms.png",
                                                     "validation.md"]
    assert all((out / f"{s}.png").read_bytes().startswith(PNG) for s in ("osipi-aif", "phantoms"))
    text = (out / "validation.md").read_text()
    assert "**PASSED**" in text and "0 failed" in text
    for package in ("numpy", "numba", "torch"):
        assert f"| {package} |" in text
    # the AIF suite: 54 curves, the 7 Georgiou curves as expected failures with their measured values
    n_aif = len(osipi_aif.cases())
    assert f"| [OSIPI population AIFs](#osipi-aif) | {n_aif} | {n_aif - 7} | 7 | 0 |" in text
    assert "- `georgiou-original_AIF`: functional form" in text and "(+1.59 %)" in text
    # what it prints per suite: the expected failures too, each with its reason
    assert f"osipi-aif: {n_aif} cases, {n_aif - 7} passed, 7 expected failures, 0 failed (" in stdout
    assert "\n  expected failure georgiou-original_AIF: functional form" in stdout
    assert sum(line.startswith("  expected failure ") for line in stdout.splitlines()) == 7
    # every model with a phantom, every method, with its accuracy row
    for cls in COMMANDS.values():
        if cls.has_phantom():
            for method in cls.methods:
                assert re.search(rf"\| {cls.__name__}( \w+)? {method} \| 1 \| 1 \| 0 \| 0 \|", text), (cls, method)
    assert "| IVIM segmented | 0.072 | 0.1 | 30 | 1280 |" in text
    assert "`segmented` | 0.1 |" in text  # the declaration table


def test_a_broken_estimator_fails_validation_and_is_named(tmp_path, monkeypatch, capsys):
    lsq = IVIM.methods["lsq"]
    fit = type(lsq).fit

    def broken(model, Y, C, **options):
        res = fit(lsq, model, Y, C, **options)
        res.params["f"] = res.params["f"] + 0.5
        return res

    monkeypatch.setattr(lsq, "fit", broken)
    out = tmp_path / "report"
    assert main(["validate", "--suite", "osipi-ivim", "phantoms", "--out-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("qmri: validation failed: ")
    assert f"(osipi-ivim: {len(osipi_ivim.cases()) // 2}, phantoms: 1;" in err and str(out / "validation.md") in err
    text = (out / "validation.md").read_text()
    assert "**FAILED**" in text
    assert "| IVIM lsq | 124 | 0 | 0 | 124 | 0.0 % |" in text and "| IVIM segmented | 124 | 124 | 0 | 0 |" in text
    assert "- `generic.json-Liver-lsq`: f: measured" in text
    assert "- `ivim-lsq`: f: NRMSE" in text and "without noise > 1e-06" in text


def test_an_existing_report_needs_force(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["validate", "--suite", "osipi-concentration", "--out-dir", str(out)]) == 0
    first = (out / "validation.md").read_text()
    assert main(["validate", "--suite", "osipi-concentration", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err and err.count("\n") == 1
    assert (out / "validation.md").read_text() == first
    assert main(["validate", "--suite", "osipi-concentration", "--out-dir", str(out), "--force"]) == 0
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_methods_declare_how_they_are_validated(monkeypatch):
    """A method added to a model is validated on its phantom without editing the validation code,
    with the options and the tolerance its Validation declares."""
    from qmri.fitting.result import FitResult

    seen = []

    def constant(model, Y, C, value=1.0):
        seen.append(value)
        n = Y.shape[0]
        return FitResult.closed_form(model.spec.names, np.tile([1000.0, value], (n, 1)), np.zeros(n, np.int8),
                                     np.zeros(n), np.zeros(n))

    value = Option("value", "the ADC to return", float, 1.0)
    slow = Method("slow", "a constant (test)", constant, options=(value,),
                  validation=Validation(recovery=None, options={"value": 1e-3}, reference_cases=False))
    exact = Method("exact", "a constant (test)", constant, options=(value,), validation=Validation(options={"value": 1e-3}))
    monkeypatch.setattr(ADC, "methods", {**ADC.methods, "slow": slow, "exact": exact})
    results = {c.id: c.run() for c in phantoms.cases(models=["adc"])}
    assert set(results) == {f"adc-{m}" for m in ADC.methods} and {"adc-slow", "adc-exact", "adc-wls"} <= set(results)
    assert seen and set(seen) == {1e-3}
    assert results["adc-slow"].passed  # no noise-free tolerance declared: accuracy reported only
    assert results["adc-slow"].metrics["NRMSE ADC"] > 0.1
    assert not results["adc-exact"].passed and "ADC: NRMSE" in results["adc-exact"].message


def test_methods_not_held_to_reference_cases_are_left_out(monkeypatch):
    net = Method("net", "learns from the voxels it fits (test)", lambda *a: None,
                 validation=Validation(reference_cases=False))
    monkeypatch.setattr(IVIM, "methods", {**IVIM.methods, "net": net})
    assert osipi_ivim.methods() == ["lsq", "segmented"]


def test_missing_reference_data_fail_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(osipi, "OSIPI", tmp_path)
    run = run_suite("osipi-ivim")
    assert [r.case.id for r in run.failures] == [f"missing-{f}" for f in osipi_ivim.FILES]
    assert str(tmp_path / "osipi_ivim" / "tests" / "IVIMmodels" / "unit_tests" / "generic.json") in \
        run.failures[0].outcome.message


def test_a_crash_is_a_failure_even_in_an_expected_failure():
    from qmri.validation.cases import Case
    from qmri.validation.runner import FAILED, run_case

    def crash():
        raise RuntimeError("boom\nsecond line")

    r = run_case(Case("x", "g", "c", crash, expected_failure="known"))
    assert r.status == FAILED and r.outcome.message == "RuntimeError: boom"


def test_unknown_suite_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--suite", "nope", "--out-dir", str(tmp_path / "r")])
    assert exc.value.code == 2 and capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "r").exists()
    assert list(SUITES)[-1] == "phantoms"


@pytest.mark.slow
def test_installed_package_validates_itself_outside_the_repository(tmp_path):
    """A non-editable installation (wheel built from this tree, installed into a folder first on the
    path) finds its shipped reference data when run from a folder outside the repository."""
    source, target = tmp_path / "source", tmp_path / "site"
    # built from a copy, so that the build leaves nothing in the working tree
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "*.nbi",
                                                                "*.nbc", "demo_out", "out", "bench_out"))
    build = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            "--target", str(target), str(source)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = ("import sys, qmri, qmri.validation.osipi as o; print(qmri.__file__); print(o.OSIPI); "
            "from qmri.cli.main import main; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "validate", "--suite", "osipi-concentration", "osipi-aif",
                        "--out-dir", "report"], cwd=work, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    qmri_file, data = r.stdout.splitlines()[:2]
    assert qmri_file.startswith(str(target)) and data.startswith(str(target))
    assert "validation passed" in r.stdout
    assert (work / "report" / "validation.md").exists()
    # every shipped file (data, NOTICE, licences, SOURCE.txt) is installed
    shipped = {p.relative_to(osipi.OSIPI) for p in osipi.OSIPI.rglob("*") if p.is_file()}
    installed = target / "qmri" / "validation" / "data" / "osipi"
    assert len(shipped) == 29 and {p.relative_to(installed) for p in installed.rglob("*") if p.is_file()} == shipped
    # and the real acquisitions (qmri validate --suite real)
    from qmri.validation import real

    shipped = {p.relative_to(real.DATA) for p in real.DATA.rglob("*") if p.is_file()}
    installed = target / "qmri" / "validation" / "data" / "real"
    assert Path("kruk/curves.csv") in shipped and {p.relative_to(installed) for p in installed.rglob("*")
                                                     if p.is_file()} == shipped
