"""Every option means what it says: thread counts within the cores, no abbreviated flags, option values
of the declared type (command line, Python and cohort configuration alike)."""

import argparse
import re
from pathlib import Path

import pytest

from qmri.errors import QMRIInputError
from qmri.options import Option


# --threads -----------------------------------------------------------------------------------
def test_threads_above_the_cores_are_refused_by_every_command(tmp_path, capsys):
    from qmri.cli.main import main
    from qmri.threads import available

    n = available()
    for command in ("ivim", "adc", "stretched", "dki", "dce", "t1"):
        extra = ["--aif", "parker"] if command == "dce" else []
        for value in ("100000", "2147483648", str(n + 1)):
            assert main([command, str(tmp_path / "x.nii.gz"), "--out-dir", str(tmp_path / "o"), *extra,
                         "--threads", value]) == 2
            err = capsys.readouterr().err
            assert err == (f"qmri: error: --threads {value}: more than the {n} core(s) this process may use; "
                           f"give at most {n}\n")
    assert not (tmp_path / "o").exists()


def test_threads_check_is_shared_by_python_and_the_cohort_engine():
    from qmri.cohort.engine import connect
    from qmri.threads import available, check_threads, set_threads

    n = available()
    assert check_threads(n) == n and check_threads(1) == 1
    for bad in (0, -1, 1.5, True, n + 1, 10**9, float("nan")):
        with pytest.raises(QMRIInputError, match="--threads"):
            set_threads(bad)
    with pytest.raises(QMRIInputError, match=f"give at most {n}"):
        with connect(threads=n + 1):  # checked before any cluster starts
            pass


# argparse abbreviations ----------------------------------------------------------------------
def _parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_no_parser_accepts_an_abbreviated_flag():
    from qmri.cli.main import COMMANDS, _command, _models, build_parser

    names = [None, *_models(), *(_command(c) for c in COMMANDS)]
    parsers = [p for name in names for p in _parsers(build_parser(name))]
    assert len(parsers) > len(names) and all(p.allow_abbrev is False for p in parsers)


def test_se_is_not_taken_as_seed_in_dki(capsys):
    from qmri.cli.main import build_parser

    parser = build_parser("dki")
    assert parser.parse_args(["dki", "s.nii.gz", "--out-dir", "o", "--seed", "3"]).seed == "3"
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["dki", "s.nii.gz", "--out-dir", "o", "--se", "3"])
    assert exc.value.code == 2 and "unrecognized arguments: --se 3" in capsys.readouterr().err


# bounds: one check (point 5) -------------------------------------------------------------------
BAD_PAIRS = [(1e400, 1e401), (0.0, float("inf")), (float("nan"), 1.0), (0.5, 0.1), ("0", "1"), (True, 2.0), (1.0,),
             "0:1"]


@pytest.mark.parametrize("pair", BAD_PAIRS, ids=[repr(p) for p in BAD_PAIRS])
def test_bad_bounds_are_refused_by_python_the_command_line_and_the_cohort_configuration(tmp_path, pair):
    from qmri.cohort import load_config
    from qmri.models import VFA
    from qmri.models.base import bound_pair

    with pytest.raises(QMRIInputError, match="T1 must be \\[lower, upper\\]: two finite numbers"):
        bound_pair("T1", pair)
    with pytest.raises(QMRIInputError, match="bounds: T1 must be \\[lower, upper\\]"):
        VFA([2, 5, 10, 15], 0.005, bounds={"T1": pair})
    if isinstance(pair, tuple) and len(pair) == 2 and not isinstance(pair[0], (str, bool)):
        toml = "[" + ", ".join("1e400" if v == float("inf") else repr(v) for v in pair) + "]"  # TOML: inf, nan
        config = tmp_path / "steps.toml"
        config.write_text(f"[fit.a]\nmodel = 't1'\nseries = {{suffix = 'VFA'}}\nbounds = {{T1 = {toml}}}\n")
        with pytest.raises(QMRIInputError, match=r"\[fit.a\] bounds: T1 must be \[lower, upper\]: two finite"):
            load_config(config)


def test_overflowing_bounds_on_the_command_line_are_refused_before_any_file_is_read(tmp_path, capsys):
    from qmri.cli.main import main

    for command, item in (("t1", "T1=1e400:1e401"), ("stretched", "alpha=1e400:1e401"), ("adc", "ADC=0:inf")):
        extra = ["--fa", "2,5", "--tr", "0.005"] if command == "t1" else ["--method", "lsq"] if command == "adc" else []
        assert main([command, str(tmp_path / "none.nii.gz"), "--out-dir", str(tmp_path / "o"), *extra,
                     "--bounds", item]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"qmri: error: --bounds {item}: ") and "two finite numbers" in err and err.count("\n") == 1


def test_equal_bounds_fix_a_parameter_everywhere(tmp_path):
    import numpy as np

    from qmri.cohort import load_config
    from qmri.models import IVIM
    from qmri.models.model import parse_bounds

    assert parse_bounds("f=0.1:0.1") == {"f": (0.1, 0.1)}
    config = tmp_path / "steps.toml"
    config.write_text("[fit.a]\nmodel = 'ivim'\nseries = {suffix = 'dwi'}\nbounds = {f = [0.1, 0.1]}\n")
    assert load_config(config).fits["a"].bounds == {"f": (0.1, 0.1)}
    b = [0, 10, 20, 50, 100, 200, 400, 600, 800, 1000]
    model = IVIM(b, bounds={"f": (0.1, 0.1)})
    rng = np.random.default_rng(0)
    data = model.signal(dict(S0=1000.0, f=0.15, D=1e-3, Dstar=0.02)) + rng.normal(0, 5, (20, len(b)))
    for method in ("lsq", "segmented"):
        maps = model.fit(data, method=method)
        assert np.all(maps["f"] == 0.1) and "f" not in maps.provenance.get("at_bound", {})


# bounds a method does not apply (point 4) ------------------------------------------------------
def test_bounds_with_a_method_that_ignores_them_are_refused():
    import numpy as np

    from qmri.models import ADC, VFA

    b = [0, 100, 400, 800]
    adc = ADC(b, bounds={"ADC": (0.0, 0.003)})
    data = adc.signal(dict(S0=500.0, ADC=np.array([1e-3, 2e-3, 4e-3])))
    with pytest.raises(QMRIInputError, match="method 'wls' of ADC does not apply bounds \\(--bounds ADC\\); methods "
                                             "that do: lsq, dnn"):
        adc.fit(data)
    assert np.nanmax(adc.fit(data, method="lsq")["ADC"]) <= 0.003
    vfa = VFA([2, 5, 10, 15], 0.005, bounds={"T1": (0.1, 3.0)})
    sig = vfa.signal(dict(M0=1000.0, T1=1.2))[None]
    with pytest.raises(QMRIInputError, match="method 'linear' of VFA does not apply bounds"):
        vfa.fit(sig, method="linear")
    # without bounds of the user's, an unbounded method records no bounds and no voxels "at a bound"
    maps = ADC(b).fit(data)
    assert "bounds" not in maps.provenance and "at_bound" not in maps.provenance
    assert maps["ADC"][2] == pytest.approx(4e-3)


def test_bounds_with_an_unbounded_method_in_a_cohort_configuration_are_refused(tmp_path):
    from qmri.cohort import load_config

    config = tmp_path / "steps.toml"
    config.write_text("[fit.a]\nmodel = 'adc'\nseries = {suffix = 'dwi'}\nbounds = {ADC = [0, 0.003]}\n")
    with pytest.raises(QMRIInputError, match=r"\[fit.a\] bounds: method 'wls' of ADC does not apply bounds"):
        load_config(config)
    config.write_text("[fit.a]\nmodel = 'adc'\nmethod = 'lsq'\nseries = {suffix = 'dwi'}\nbounds = {ADC = [0, 0.003]}\n")
    assert load_config(config).fits["a"].bounds == {"ADC": (0.0, 0.003)}


# DKI --bounds (point 3) ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dki_series(tmp_path_factory):
    from qmri.cli.main import main

    d = tmp_path_factory.mktemp("dki")
    assert main(["phantom", "dki", "--out-dir", str(d)]) == 0
    return d / "dki.nii.gz"


def test_full_tensor_dki_refuses_bounds_and_trace_dki_applies_them(dki_series, tmp_path, capsys):
    import json

    from qmri.cli.main import main

    for method in ("wls", "lsq", "ols", "cwls"):
        assert main(["dki", str(dki_series), "--out-dir", str(tmp_path / method), "--method", method,
                     "--bounds", "K=0:2", "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("qmri: error: full-tensor DKI takes no bounds (--bounds)") and "--trace" in err
        assert not (tmp_path / method).exists()
    assert main(["dki", str(dki_series), "--out-dir", str(tmp_path / "trace"), "--trace", "--bounds", "K=0:2",
                 "--quiet"]) == 0
    sidecar = json.loads(next((tmp_path / "trace").glob("*K.json")).read_text())
    text = json.dumps(sidecar)
    assert '"K": [0.0, 2.0]' in text


def test_dki_bounds_name_the_trace_parameters():
    from qmri.models import command

    assert command("dki").parameter_names() == ["S0", "D", "K"]


# option values (point 12) ----------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [("false", False), ("no", False), ("off", False), ("0", False),
                                         (" False ", False), ("OFF", False), ("true", True), ("yes", True),
                                         ("on", True), ("1", True), ("True", True)])
def test_a_switch_reads_every_spelling_of_true_and_false(text, value):
    assert Option("x", "", bool).convert(text) is value


@pytest.mark.parametrize("text", ["maybe", "", "2", "nein", "false!"])
def test_a_switch_refuses_other_text_in_one_line(text):
    with pytest.raises(QMRIInputError) as exc:
        Option("x", "", bool).convert(text)
    assert str(exc.value) == f"--x: expected true or false, got {text!r}"


def test_option_values_must_be_of_the_declared_type():
    assert Option("x", "", bool).convert("false") is False
    assert Option("x", "", bool).convert("true") is True and Option("x", "", bool).convert(False) is False
    assert Option("x", "", float).convert("2") == 2.0 and Option("x", "", int).convert(3) == 3
    for type_, value, message in [(float, [200], "expected a number, got [200]"), (float, True, "expected a number"),
                                  (float, "nan", "finite"), (int, 2.5, "expected an integer, got 2.5"),
                                  (int, True, "expected an integer"), (str, 5, "expected text"),
                                  (bool, "maybe", "expected true or false"), (Path, 3, "expected a file path")]:
        with pytest.raises(QMRIInputError, match=re.escape(message)):
            Option("x", "", type_).convert(value)


def test_python_model_options_are_checked_by_type(tmp_path):
    from qmri.models import command
    from qmri.workflows import fit_files

    with pytest.raises(QMRIInputError, match="--threshold: expected a number, got True"):
        fit_files(command("ivim"), tmp_path / "x.nii.gz", out_dir=tmp_path / "o", model_options={"threshold": True})


IVIM = "[fit.a]\nmodel = 'ivim'\nseries = {suffix = 'dwi'}\n"
HABITAT = IVIM + "[roi]\nmask = {suffix = 'mask'}\n[habitat]\nmaps = ['a.D']\n"
BAD_VALUES = [
    (IVIM + "[fit.a.options]\nthreshold = [200]\n", "[fit.a.options] threshold: expected a number, got [200]"),
    (IVIM + "[fit.a.options]\nthreshold = true\n", "[fit.a.options] threshold: expected a number, got True"),
    (IVIM + "[fit.a.options]\ncompute_se = 'maybe'\n", "[fit.a.options] compute_se: expected true or false"),
    (IVIM + "[fit.a.options]\npreset = 3\n", "[fit.a.options] preset: expected text, got 3"),
    (HABITAT + "k = 0\n", "[habitat] k: k must be at least 2 (or auto), got 0"),
    (HABITAT + "k = 2.5\n", "[habitat] k: expected an integer, got 2.5"),
    (HABITAT + "beta = [1]\n", "[habitat] beta: expected a number, got [1]"),
    ("[fit.a]\nmodel = 'dce'\nseries = {suffix = 'dce'}\n[fit.a.options]\nt10 = 1.0\n",
     "[fit.a.options]: aif missing (qmri dce requires --aif)"),
    ("[fit.a]\nmodel = ['ivim']\nseries = {suffix = 'dwi'}\n", "[fit.a]: model must be one of"),
    (IVIM + "method = ['lsq']\n", "[fit.a]: method must be one of"),
]


@pytest.mark.parametrize("text,message", BAD_VALUES, ids=[m for _, m in BAD_VALUES])
def test_cohort_option_values_are_checked_before_the_run(tmp_path, text, message):
    from qmri.cohort import load_config

    path = tmp_path / "steps.toml"
    path.write_text(text)
    with pytest.raises(QMRIInputError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value) and "\n" not in str(err.value)


def test_cohort_option_paths_are_relative_to_the_configuration_folder(tmp_path, monkeypatch):
    from qmri.cohort import load_config

    folder = tmp_path / "study"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    path = folder / "steps.toml"
    dce = "[fit.{n}]\nmodel = 'dce'\nseries = {{suffix = 'dce'}}\n[fit.{n}.options]\nt10 = 1.0\naif = '{aif}'\n"
    path.write_text(dce.format(n="a", aif="myaif.csv") + dce.format(n="b", aif="roi:artery.nii.gz")
                    + dce.format(n="c", aif="parker")
                    + "[fit.d]\nmodel = 'ivim'\nmethod = 'dnn'\nseries = {suffix = 'dwi'}\n[fit.d.options]\n"
                      "weights = 'nets.pt'\n"
                    + "[fit.e]\nmodel = 'ivim'\nseries = {suffix = 'dwi'}\n[fit.e.options]\ncompute_se = 'false'\n")
    fits = load_config(path).fits
    assert fits["a"].options["aif"] == str(folder.resolve() / "myaif.csv")
    assert fits["b"].options["aif"] == "roi:" + str(folder.resolve() / "artery.nii.gz")
    assert fits["c"].options["aif"] == "parker"
    assert fits["d"].options["weights"] == str(folder.resolve() / "nets.pt")
    assert fits["e"].options["compute_se"] is False
