"""Where the outputs go: an output folder that cannot be written is refused before any work, a write
that fails (disk full, read-only file system) is a one-line error with nothing of the set left,
``--force`` replaces a whole earlier result set, a prefix stays a file-name prefix."""

import errno
import json
import os

import pytest

from qmri import io
from qmri.cli.main import main


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    d = tmp_path_factory.mktemp("ph")
    assert main(["phantom", "ivim", "--out-dir", str(d / "ivim"), "--block", "2", "2", "1"]) == 0
    assert main(["phantom", "dki", "--out-dir", str(d / "dki"), "--block", "2", "2", "1"]) == 0
    assert main(["ivim", str(d / "ivim" / "ivim.nii.gz"), "--out-dir", str(d / "fit"), "--quiet"]) == 0
    assert main(["phantom", "cohort", "--out-dir", str(d / "bids"), "--subjects", "1", "--voxels", "300"]) == 0
    from qmri.cohort.example import EXAMPLE_CONFIG

    (d / "steps.toml").write_text(EXAMPLE_CONFIG)
    return d


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(code, err, culprit):
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith(f"qmri: error: {culprit}: ") and err.count("\n") == 1, err


@pytest.fixture
def no_fit(monkeypatch):
    """Any fit started fails the test: the checks must come first."""
    from qmri.models.model import Model

    def fit(*a, **k):
        raise AssertionError("the fit started before the output folder was checked")

    monkeypatch.setattr(Model, "fit", fit)


def _commands(ph, out):
    return {
        "ivim": ["ivim", ph / "ivim" / "ivim.nii.gz", "--out-dir", out, "--quiet"],
        "dki": ["dki", ph / "dki" / "dki.nii.gz", "--out-dir", out, "--quiet"],
        "stats": ["stats", f"{ph / 'fit'}:D", "--labels", ph / "ivim" / "labels.nii.gz", "--out", out / "roi.csv",
                  "--quiet"],
        "phantom": ["phantom", "ivim", "--out-dir", out, "--block", "2", "2", "1"],
        "phantom cohort": ["phantom", "cohort", "--out-dir", out, "--subjects", "1", "--voxels", "300"],
        "cohort": ["cohort", ph / "bids", out, "participant", "--config", ph / "steps.toml", "--workers", "1"],
    }


@pytest.mark.parametrize("kind", ["file", "parent is a file", "/dev/null"])
def test_out_dir_that_is_not_a_folder_is_refused_before_the_fit(phantoms, tmp_path, capsys, no_fit, kind):
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    out = {"file": afile, "parent is a file": afile / "sub", "/dev/null": "/dev/null"}[kind]
    for name, argv in _commands(phantoms, tmp_path / "unused").items():  # checked before any work
        argv = [out if a == tmp_path / "unused" else a for a in argv]
        if name == "stats":
            argv[argv.index("--out") + 1] = f"{out}/roi.csv"
        code, _, err = _run(argv, capsys)
        _one_line_error(code, err, out)
        assert "not a folder" in err, (name, err)
    assert afile.read_text() == "not a folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_read_only_folder_is_refused_before_the_fit(phantoms, tmp_path, capsys, no_fit, monkeypatch):
    """As the kernel answers for a folder without write permission, on a read-only file system or
    immutable: ``access(2)`` says no. Simulated (the tests may run as root, who may write anyway, and
    cannot mount or set the immutable flag portably); the real permission case follows."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if os.path.abspath(p) == str(ro)
                        else real_access(p, mode, **k))
    for name, argv in _commands(phantoms, ro / "out").items():
        code, _, err = _run(argv, capsys)
        _one_line_error(code, err, ro / "out")
        assert f"no permission to write in {ro}" in err, (name, err)
    assert list(ro.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a folder without write permission, so chmod "
                                              "cannot make one unwritable (the simulated case above covers it)")
def test_folder_without_write_permission_is_refused(phantoms, tmp_path, capsys, no_fit):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, _, err = _run(_commands(phantoms, ro)["ivim"], capsys)
    finally:
        ro.chmod(0o755)
    _one_line_error(code, err, ro)


@pytest.mark.parametrize("code_", [errno.ENOSPC, errno.EROFS], ids=["disk full", "read-only file system"])
@pytest.mark.parametrize("command", ["ivim", "dki", "stats", "phantom", "phantom cohort"])  # cohort: worker processes
def test_write_that_fails_is_a_one_line_error_and_leaves_nothing(phantoms, tmp_path, capsys, monkeypatch,
                                                                  command, code_):
    """The file system refuses a write (faked at the write layer: a full disk cannot be made here)."""
    calls = []

    def failing(real):
        def write(path, *a, **k):
            calls.append(path)
            if len(calls) > 1:  # the first file of the set is written, the second fails
                raise OSError(code_, os.strerror(code_))
            return real(path, *a, **k)
        return write

    for name in ("write_map", "write_json", "write_text"):
        monkeypatch.setattr(io, name, failing(getattr(io, name)))
    out = tmp_path / "out"
    code, _, err = _run(_commands(phantoms, out)[command], capsys)
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("qmri: error: ") and os.strerror(code_) in err, err
    assert calls, "nothing was written: the fault was not reached"
    left = [p for p in out.rglob("*")] if out.exists() else []
    assert not [p for p in left if p.is_file()], left


def test_force_replaces_the_whole_earlier_result_set(phantoms, tmp_path, capsys):
    ph, out = phantoms, tmp_path / "fit"
    base = ["ivim", ph / "ivim" / "ivim.nii.gz", "--out-dir", out, "--quiet"]
    assert _run(base + ["--se", "--plot"], capsys)[0] == 0
    first = {p.name for p in out.iterdir()}
    assert {"D_se.nii.gz", "D_se.json", "maps.png"} <= first
    (out / "notes.txt").write_text("mine\n")  # not of a result set: kept
    assert _run(base + ["--prefix", "other_"], capsys)[0] == 0  # another set (other names): kept
    assert _run(base + ["--force"], capsys)[0] == 0
    names = {p.name for p in out.iterdir()}
    assert not [n for n in names if n.startswith("D_se") or n == "maps.png"], names
    assert "notes.txt" in names and "other_D.nii.gz" in names and "other_D.json" in names
    sets = {json.loads((out / n).read_text())["ResultSet"]["Id"] for n in names
            if n.endswith(".json") and not n.startswith("other_")}
    assert len(sets) == 1  # one set, none of the old one left
    code, stdout, err = _run(["stats", f"{out}:D,f", "--labels", ph / "ivim" / "labels.nii.gz", "--out", "-"], capsys)
    assert code == 0, err


def test_force_never_removes_a_file_the_old_sidecar_lists_that_is_not_of_its_set(tmp_path):
    from qmri.resultset import replaced_files

    side = {"ResultSet": {"Id": "a" * 32, "Files": ["D.nii.gz", "D.json", "E.nii.gz", "E.json", "fig.png",
                                                     "../outside.txt", "F.nii.gz"]}}
    (tmp_path / "D.json").write_text(json.dumps(side))
    (tmp_path / "E.json").write_text(json.dumps(side))
    (tmp_path / "F.json").write_text(json.dumps({"ResultSet": {"Id": "b" * 32, "Files": ["F.nii.gz", "F.json"]}}))
    for n in ("D.nii.gz", "E.nii.gz", "F.nii.gz", "fig.png"):
        (tmp_path / n).write_bytes(b"x")
    (tmp_path.parent / "outside.txt").write_text("x")
    stale = replaced_files(tmp_path, ["D.nii.gz", "D.json"], keep=["D.nii.gz", "D.json"])
    assert sorted(stale) == ["E.json", "E.nii.gz", "fig.png"]  # F belongs to set b, outside.txt to no folder


def test_prefix_with_a_path_separator_is_refused(phantoms, tmp_path, capsys, no_fit):
    code, _, err = _run(["ivim", phantoms / "ivim" / "ivim.nii.gz", "--out-dir", tmp_path / "o", "--prefix",
                         "../../x_", "--quiet"], capsys)
    _one_line_error(code, err, "--prefix '../../x_'")
    assert "path separator" in err
    assert list(tmp_path.iterdir()) == []


def test_failed_folder_part_leaves_no_partial_folder_and_restores_the_old(tmp_path):
    from qmri.resultset import replacing_folder, stages

    part = tmp_path / "habitat"
    with pytest.raises(RuntimeError):
        with replacing_folder(part) as out:
            (out / "sub").mkdir(parents=True)
            (out / "sub" / "a.txt").write_text("half")
            raise RuntimeError("step failed")
    assert list(tmp_path.iterdir()) == []
    with replacing_folder(part) as out:
        out.mkdir()
        (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with replacing_folder(part, force=True) as out:
            out.mkdir()
            (out / "new.txt").write_text("new")
            raise RuntimeError("step failed")
    assert [p.name for p in part.iterdir()] == ["old.txt"] and stages(tmp_path) == []
    with replacing_folder(part, force=True) as out:
        out.mkdir()
        (out / "new.txt").write_text("new")
    assert [p.name for p in part.iterdir()] == ["new.txt"] and stages(tmp_path) == []


def test_replacement_cut_short_is_finished_by_recovery(tmp_path):
    """A run killed after its commit: recovery moves its files in and removes the replaced set's."""
    from qmri.resultset import recover, stages

    stage = tmp_path / ".qmri-0123456789ab-x.partial"
    stage.mkdir()
    (stage / "D.json").write_text("new\n")
    (stage / ".remove").write_text("D_se.json\n../outside.txt\n")
    (stage / ".commit").write_text("D.json\n")
    (tmp_path / "D_se.json").write_text("old\n")
    (tmp_path.parent / "outside.txt").write_text("kept\n")
    os.utime(stage, (0, 0))  # a stage without a lock, older than a live run's: its run is gone
    assert recover(tmp_path) == [stage]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D.json"] and stages(tmp_path) == []
    assert (tmp_path / "D.json").read_text() == "new\n" and (tmp_path.parent / "outside.txt").exists()
