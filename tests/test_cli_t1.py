"""``qmri t1`` end to end on a tiny synthetic VFA series, and every bad-input case (exit 2)."""

import json

import nibabel as nib
import numpy as np
import pytest

from qmri.cli.main import main
from qmri.models import VFA

FA = [2.0, 5.0, 10.0, 15.0]
TR = 0.005
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


@pytest.fixture
def vfa_files(tmp_path):
    rng = np.random.default_rng(0)
    shape = (4, 3, 2)
    t1 = rng.uniform(0.4, 2.5, shape)
    m0 = rng.uniform(1000, 3000, shape)
    b1 = np.round(rng.uniform(0.8, 1.2, shape), 3)
    data = VFA(FA, TR).signal(dict(M0=m0, T1=t1), b1=b1)
    mask = np.ones(shape, bool)
    mask[0, 0, 0] = False
    paths = {}
    for name, arr in (("vfa", data), ("b1", b1), ("b1pct", 100 * b1), ("mask", mask.astype(np.uint8))):
        paths[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(arr.astype(np.float32 if name != "mask" else np.uint8), AFFINE), paths[name])
    return dict(paths=paths, t1=t1, m0=m0, b1=b1, mask=mask, dir=tmp_path)


def _args(f, *extra, out="out"):
    return [ "t1", str(f["paths"]["vfa"]), "--fa", ",".join(map(str, FA)), "--tr", str(TR),
             "--out-dir", str(f["dir"] / out), "--quiet", *extra]


@pytest.mark.parametrize("method", ["linear", "lsq"])
def test_cli_t1_with_b1_and_mask(vfa_files, method):
    f = vfa_files
    assert main(_args(f, "--b1", str(f["paths"]["b1"]), "--mask", str(f["paths"]["mask"]),
                      "--method", method, "--prefix", "s1_")) == 0
    out = f["dir"] / "out"
    t1 = nib.load(out / "s1_T1.nii.gz")
    assert np.allclose(t1.affine, AFFINE)
    t1 = np.asarray(t1.dataobj)
    m = f["mask"]
    # float32 signals: recovery to 1e-4 relative
    np.testing.assert_allclose(t1[m], f["t1"][m], rtol=1e-4)
    assert np.isnan(t1[~m]).all()
    np.testing.assert_allclose(np.asarray(nib.load(out / "s1_M0.nii.gz").dataobj)[m], f["m0"][m], rtol=1e-4)
    for name in ("rmse", "r2", "status", "n_iter"):
        assert (out / f"s1_{name}.nii.gz").exists()
    side = json.loads((out / "s1_T1.json").read_text())
    assert side["Units"] == "s" and side["FlipAngle"] == FA and side["B1Corrected"] is True
    assert side["Method"] == method


def test_cli_t1_b1_percent_plot_and_se(vfa_files):
    f = vfa_files
    assert main(_args(f, "--b1", str(f["paths"]["b1pct"]), "--b1-units", "percent", "--plot", "--se")) == 0
    out = f["dir"] / "out"
    t1 = np.asarray(nib.load(out / "T1.nii.gz").dataobj)
    np.testing.assert_allclose(t1, f["t1"], rtol=1e-4)
    assert (out / "maps.png").exists() and (out / "T1_se.nii.gz").exists()


def test_cli_t1_refuses_overwrite_then_forces(vfa_files, capsys):
    f = vfa_files
    assert main(_args(f)) == 0
    assert main(_args(f)) == 2
    assert "--force" in capsys.readouterr().err
    assert main(_args(f, "--force")) == 0


def _bad(tmp, name, arr, affine=AFFINE):
    p = tmp / name
    nib.save(nib.Nifti1Image(np.asarray(arr, np.float32), affine), p)
    return str(p)


@pytest.mark.parametrize("case", [
    "fa_count", "fa_negative", "fa_text", "tr_zero", "tr_ms", "tr_count", "b1_shape", "b1_affine",
    "b1_percent_as_fraction", "missing_vfa", "missing_b1", "missing_mask", "se_linear", "three_d",
])
def test_cli_t1_bad_input_exits_2(vfa_files, capsys, case):
    f = vfa_files
    tmp = f["dir"]
    args = {
        "fa_count": _args(f, "--fa", "2,5,10"),
        "fa_negative": _args(f, "--fa=-2,5,10,15"),
        "fa_text": _args(f, "--fa", "2,five,10,15"),
        "tr_zero": _args(f, "--tr", "0"),
        "tr_ms": _args(f, "--tr", "5"),
        "tr_count": _args(f, "--tr", "0.005,0.005"),
        "b1_shape": _args(f, "--b1", _bad(tmp, "b1s.nii.gz", np.ones((4, 3, 3)))),
        "b1_affine": _args(f, "--b1", _bad(tmp, "b1a.nii.gz", np.ones((4, 3, 2)), np.eye(4))),
        "b1_percent_as_fraction": _args(f, "--b1", str(f["paths"]["b1pct"])),
        "missing_vfa": ["t1", str(tmp / "none.nii.gz"), "--fa", "2,5,10,15", "--tr", "0.005", "--out-dir", str(tmp / "o")],
        "missing_b1": _args(f, "--b1", str(tmp / "none_b1.nii.gz")),
        "missing_mask": _args(f, "--mask", str(tmp / "none_mask.nii.gz")),
        "se_linear": _args(f, "--method", "linear", "--se"),
        "three_d": ["t1", _bad(tmp, "vol3d.nii.gz", np.ones((4, 3, 2))), "--fa", "2,5", "--tr", "0.005",
                    "--out-dir", str(tmp / "o")],
    }[case]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qmri: error: ") and "\n" not in err and "Traceback" not in err
    assert not (tmp / "out" / "T1.nii.gz").exists()
