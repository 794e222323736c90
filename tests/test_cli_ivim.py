"""`qmri ivim` and `qmri phantom ivim` end to end, and every bad-input case (exit 2, nothing written)."""

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from qmri.cli.main import main

from conftest import REPO, run_qmri

OUTPUTS = ["S0", "f", "D", "Dstar", "rmse", "r2", "status", "n_iter"]


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ph")
    assert main(["phantom", "ivim", "--out-dir", str(d), "--snr", "200", "--block", "3", "3", "1"]) == 0
    return d


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_phantom_files(phantom_dir):
    img = nib.load(phantom_dir / "ivim.nii.gz")
    bvals = np.loadtxt(phantom_dir / "ivim.bval")
    assert img.ndim == 4 and img.shape[3] == bvals.size == 13
    truth = nib.load(phantom_dir / "truth_D.nii.gz").get_fdata()
    mask = nib.load(phantom_dir / "mask.nii.gz").get_fdata() > 0
    assert np.all(np.isfinite(truth[mask])) and np.all(np.isnan(truth[~mask]))


def test_fit_end_to_end(phantom_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = _run(["ivim", phantom_dir / "ivim.nii.gz", "--bval", phantom_dir / "ivim.bval",
                              "--mask", phantom_dir / "mask.nii.gz", "--out-dir", out, "--prefix", "p_", "--plot"],
                             capsys)
    assert code == 0, err
    assert "converged" in stdout and "median D" in stdout
    src = nib.load(phantom_dir / "ivim.nii.gz")
    mask = nib.load(phantom_dir / "mask.nii.gz").get_fdata() > 0
    for name in OUTPUTS:
        img = nib.load(out / f"p_{name}.nii.gz")
        integer = {"status": np.int8, "n_iter": np.int32}.get(name)
        assert img.get_data_dtype() == (integer or np.float32)
        assert img.shape == src.shape[:3]
        np.testing.assert_allclose(img.affine, src.affine)
        data = img.get_fdata()
        if integer:  # integer maps hold -1 ("not fitted") outside the mask
            assert np.all(data[~mask] == -1) and np.all(data[mask] >= 0)
        else:
            assert np.all(np.isnan(data[~mask]))
        side = json.loads((out / f"p_{name}.json").read_text())
        assert side["Parameter"] == name and "QmriVersion" in side and side["Method"] == "lsq"
    side = json.loads((out / "p_D.json").read_text())
    assert side["Units"] == "mm2/s" and len(side["Bvals"]) == 13 and 0 <= side["ConvergedFraction"] <= 1
    assert (out / "p_maps.png").stat().st_size > 1000
    # accuracy at SNR 200: D within 5% of the truth in every region (median)
    D = nib.load(out / "p_D.nii.gz").get_fdata()
    truth = nib.load(phantom_dir / "truth_D.nii.gz").get_fdata()
    labels = nib.load(phantom_dir / "labels.nii.gz").get_fdata()
    for r in np.unique(labels[labels > 0]):
        sel = labels == r
        assert abs(np.median(D[sel]) / truth[sel][0] - 1) < 0.05


def test_refuses_to_overwrite_without_force(phantom_dir, tmp_path, capsys):
    out = tmp_path / "o"
    args = ["ivim", phantom_dir / "ivim.nii.gz", "--bval", phantom_dir / "ivim.bval", "--out-dir", out,
            "--method", "segmented", "--quiet"]
    assert _run(args, capsys)[0] == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, stdout, err = _run(args, capsys)
    assert code == 2 and "exists" in err and "--force" in err and err.count("\n") == 1
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    code, stdout, err = _run(args + ["--force"], capsys)
    assert code == 0 and stdout == ""


def _write(path, arr, affine=np.eye(4)):
    nib.save(nib.Nifti1Image(np.asarray(arr, np.float32), affine), path)
    return path


@pytest.fixture()
def bad_inputs(tmp_path, phantom_dir):
    img = nib.load(phantom_dir / "ivim.nii.gz")
    data = img.get_fdata()
    d = {
        "dwi": phantom_dir / "ivim.nii.gz",
        "bval": phantom_dir / "ivim.bval",
        "vol3d": _write(tmp_path / "vol3d.nii.gz", data[..., 0], img.affine),
        "mask_shape": _write(tmp_path / "mask_shape.nii.gz", np.ones((2, 2, 1)), img.affine),
        "mask_affine": _write(tmp_path / "mask_affine.nii.gz", np.ones(data.shape[:3]), np.diag([2, 2, 2, 1.0])),
        "few_b": _write(tmp_path / "few_b.nii.gz", data[..., [0, 1, 9]], img.affine),
    }
    (tmp_path / "short.bval").write_text("0 10 20\n")
    (tmp_path / "text.bval").write_text("0 ten 20\n")
    (tmp_path / "neg.bval").write_text(" ".join(["-5"] + ["100"] * 12) + "\n")
    (tmp_path / "three.bval").write_text("0 10 400\n")
    d.update({k: tmp_path / f"{k}.bval" for k in ("short", "text", "neg", "three")})
    d["out"] = tmp_path / "never"
    return d


@pytest.mark.parametrize("case,expect", [
    ("count", "3 b-values but"),
    ("3d", "must be 4-D"),
    ("mask_shape", "mask shape"),
    ("mask_affine", "affine differs"),
    ("missing_dwi", "not found"),
    ("missing_bval", "not found"),
    ("missing_mask", "not found"),
    ("text", "cannot read b-values"),
    ("negative", "negative b-value"),
    ("few", "needs at least"),
])
def test_bad_input_exits_2_and_writes_nothing(case, expect, bad_inputs, capsys):
    d = bad_inputs
    dwi, bval, extra = d["dwi"], d["bval"], []
    if case == "count":
        bval = d["short"]
    elif case == "3d":
        dwi = d["vol3d"]
    elif case == "mask_shape":
        extra = ["--mask", d["mask_shape"]]
    elif case == "mask_affine":
        extra = ["--mask", d["mask_affine"]]
    elif case == "missing_dwi":
        dwi = d["dwi"].parent / "nope.nii.gz"
    elif case == "missing_bval":
        bval = d["dwi"].parent / "nope.bval"
    elif case == "missing_mask":
        extra = ["--mask", d["dwi"].parent / "nope_mask.nii.gz"]
    elif case == "text":
        bval = d["text"]
    elif case == "negative":
        bval = d["neg"]
    elif case == "few":
        dwi, bval = d["few_b"], d["three"]
    code, stdout, err = _run(["ivim", dwi, "--bval", bval, "--out-dir", d["out"], *extra], capsys)
    assert code == 2
    assert err.startswith("qmri: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert expect in err
    assert not d["out"].exists()


@pytest.mark.parametrize("name", ["x.nii.gz", "x.nii"])
def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch, name):
    from qmri import io

    def boom(img, path):  # uncompressed files are written by nibabel
        open(path, "wb").write(b"partial")
        raise OSError("disk full")

    def boom_gz(self):  # compressed ones from the image's bytes, after the file is opened
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", boom)
    monkeypatch.setattr(nib.Nifti1Image, "to_bytes", boom_gz)
    with pytest.raises(OSError):
        io.write_map(tmp_path / name, np.zeros((2, 2, 2)))
    assert list(tmp_path.iterdir()) == []


def test_console_script_is_installed(tmp_path):
    assert (Path(sys.executable).parent / "qmri").exists(), f"console script not installed beside {sys.executable}"
    exe = run_qmri("--version")
    assert exe.returncode == 0 and exe.stdout.startswith("qmri ")
    bad = run_qmri("ivim")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    mod = subprocess.run([sys.executable, "-m", "qmri.cli", "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert mod.returncode == 0 and mod.stdout.startswith("qmri ")


@pytest.mark.parametrize("argv, helped", [(["ivim", "x.nii.gz", "--out-dir", "o", "--bvals", "a"], "qmri ivim"),
                                          (["phantom", "ivim", "--out-dir", "o", "--nope"], "qmri phantom ivim"),
                                          (["stats", "m.nii.gz", "--labels", "l", "--out", "t.csv", "-x"],
                                           "qmri stats")])
def test_unknown_option_points_to_the_help_of_its_command(argv, helped, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith("qmri: error: unrecognized arguments: ") and err.endswith(f"(see '{helped} --help')\n"), err


def test_demo_table_says_what_its_numbers_are_relative_to_and_where_a_bias_comes_from():
    from qmri.models import DKI
    from qmri.workflows.demo import _notes

    ph = DKI.phantom(block=(2, 2, 1))
    region = 3  # an error put into one region only: the note names it
    md = np.where(ph.labels == region, ph.truth["MD"] * 3, ph.truth["MD"])

    class Maps(dict):
        params = property(lambda self: list(self))

    notes = _notes(DKI, ph, [("wls", Maps(MD=md, FA=ph.truth["FA"]), ph.mask)], 30)
    text = "\n".join(notes)
    assert "mean |true value|" in text and f"all {len(ph.regions)} regions pooled, at SNR 30" in text
    assert "K<0 %: voxels (%) whose fitted tensors give a negative apparent kurtosis" in text
    line = next(n for n in notes if n.startswith("bias MD"))
    assert f"100% from '{ph.regions[region - 1]['name']}'" in line and "(wls)" in line
    assert not any(n.startswith("bias FA") for n in notes)  # no bias: nothing to explain


@pytest.mark.slow
def test_readme_first_command_runs_as_written(tmp_path):
    """``qmri demo --out-dir demo_out --force``, exactly as the README's first command writes it: the
    console script, a relative output folder, in a fresh working folder."""
    readme = (REPO / "README.md").read_text()
    assert "qmri demo --out-dir demo_out --force" in readme
    r = run_qmri("demo", "--out-dir", "demo_out", "--force", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "NRMSE" in r.stdout and "lsq" in r.stdout and "segmented" in r.stdout
    words = " ".join(r.stdout.split())  # the notes under the tables are wrapped
    assert "NRMSE = RMS error / mean |true value|" in words and "K<0 %: voxels (%)" in words
    out = tmp_path / "demo_out"
    assert (out / "ivim" / "lsq" / "maps.png").exists()
    assert "HABITAT" in r.stdout and (out / "habitat" / "habitats" / "sub-01" / "habitats.png").exists()
    assert (out / "habitat" / "cohort.csv").read_text().splitlines()[1].split(",")[1] == "phantom/sub-01/roi.nii.gz"
