"""Every option means what it says: thread counts within the cores, no abbreviated flags, option values
of the declared type (command line, Python and cohort configuration alike)."""

import argparse
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
