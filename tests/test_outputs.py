"""What a fit writes and says tells the truth: file modes, provenance, rmse units, summary, warnings,
--json, the DKI acquisition line and the montage colour ranges."""

import hashlib
import json
import os

import nibabel as nib
import numpy as np
import pytest

from qmri.cli.main import main
from qmri.maps import ParameterMaps
from qmri.models import IVIM


@pytest.fixture(scope="module")
def ivim_phantom(tmp_path_factory):
    d = tmp_path_factory.mktemp("ivim")
    assert main(["phantom", "ivim", "--out-dir", str(d), "--snr", "50", "--block", "3", "3", "1"]) == 0
    return d


@pytest.fixture(scope="module")
def dce_phantom(tmp_path_factory):
    d = tmp_path_factory.mktemp("dce")
    assert main(["phantom", "dce", "--out-dir", str(d), "--block", "2", "2", "1"]) == 0
    return d


def _ivim_args(ph, out, *extra, bval="ivim.bval"):
    return ["ivim", ph / "ivim.nii.gz", "--bval", ph / bval, "--mask", ph / "mask.nii.gz", "--out-dir", out, *extra]


def _dce_args(ph, out, *extra):
    return ["dce", ph / "dce.nii.gz", "--time", ph / "times.txt", "--t10", "1", "--fa", "30", "--tr", "0.005",
            "--baseline", "10", "--mask", ph / "mask.nii.gz", "--out-dir", out, *extra]


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- permissions --------------------------------------------------------------------------------

def test_outputs_are_created_as_open_creates_files(ivim_phantom, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        assert _run(_ivim_args(ivim_phantom, tmp_path / "fit", "--plot", "--quiet"), capsys)[0] == 0
        assert main(["phantom", "adc", "--out-dir", str(tmp_path / "ph"), "--block", "2", "2", "1"]) == 0
        os.umask(0o027)
        maps = IVIM([0, 10, 100, 200, 400, 800]).fit(np.ones((2, 6)))
        maps.save(tmp_path / "py")
    finally:
        os.umask(old)
    files = list((tmp_path / "fit").iterdir()) + list((tmp_path / "ph").iterdir())
    assert files and {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o644)}
    assert {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "py").iterdir()} == {oct(0o640)}


# --- provenance and units ------------------------------------------------------------------------

def test_dce_sidecar_records_every_input_that_changed_the_numbers(dce_phantom, tmp_path, capsys):
    t1 = tmp_path / "t1.nii.gz"
    ref = nib.load(dce_phantom / "dce.nii.gz")
    nib.save(nib.Nifti1Image(np.ones(ref.shape[:3], np.float32), ref.affine), t1)
    args = _dce_args(dce_phantom, tmp_path / "pop", "--aif", "parker", "--aif-delay", "12", "--hct", "0.4",
                     "--r1", "4.2")
    args[args.index("--t10"):args.index("--t10") + 2] = ["--t1", t1]
    assert _run(args, capsys)[0] == 0
    side = json.loads((tmp_path / "pop" / "Ktrans.json").read_text())
    assert side["Aif"] == "parker" and side["AifDelayS"] == 12 and side["Hct"] == 0.4
    assert side["AifParameters"]["A1"] == 0.809 and "Parker" in side["AifSource"]
    assert side["T10Map"] == str(t1) and side["T10MapSha256"] == _sha256(t1)
    assert side["Mask"] == str(dce_phantom / "mask.nii.gz")
    assert side["MaskSha256"] == _sha256(dce_phantom / "mask.nii.gz")
    assert side["RelaxivityPerSPerMmol"] == 4.2 and side["BaselineFrames"] == 10
    assert side["FaDeg"] == 30 and side["TrS"] == 0.005
    rmse = json.loads((tmp_path / "pop" / "rmse.json").read_text())
    assert rmse["Units"] == "mM"  # the fit is to concentration
    back = ParameterMaps.load(tmp_path / "pop")  # keys read back
    assert back.provenance["t10_map_sha256"] == _sha256(t1) and back.units["rmse"] == "mM"

    # an AIF file: its path and checksum; no haematocrit (the file holds plasma), scalar T10
    assert _run(_dce_args(dce_phantom, tmp_path / "file", "--aif", dce_phantom / "aif.csv"), capsys)[0] == 0
    side = json.loads((tmp_path / "file" / "Ktrans.json").read_text())
    assert side["Aif"] == str(dce_phantom / "aif.csv") and side["AifSha256"] == _sha256(dce_phantom / "aif.csv")
    assert "Hct" not in side and side["T10S"] == 1.0 and side["AifWholeBlood"] is False


def test_vfa_and_diffusion_sidecars_record_their_input_files(tmp_path, capsys, ivim_phantom):
    assert _run(_ivim_args(ivim_phantom, tmp_path / "iv", "--quiet"), capsys)[0] == 0
    side = json.loads((tmp_path / "iv" / "D.json").read_text())
    assert side["BvalFileSha256"] == _sha256(ivim_phantom / "ivim.bval")
    assert side["MaskSha256"] == _sha256(ivim_phantom / "mask.nii.gz")
    assert json.loads((tmp_path / "iv" / "rmse.json").read_text())["Units"] == "a.u."

    fa = np.array([3.0, 8.0, 15.0])
    from qmri.models import VFA

    sig = VFA(fa, 0.005).signal({"M0": 1000.0, "T1": 1.2}) * np.ones((2, 2, 1, 1))
    nib.save(nib.Nifti1Image(sig.astype(np.float32), np.eye(4)), tmp_path / "vfa.nii.gz")
    nib.save(nib.Nifti1Image(np.full((2, 2, 1), 0.95, np.float32), np.eye(4)), tmp_path / "b1.nii.gz")
    assert _run(["t1", tmp_path / "vfa.nii.gz", "--fa", "3,8,15", "--tr", "0.005", "--b1", tmp_path / "b1.nii.gz",
                 "--out-dir", tmp_path / "t1", "--quiet"], capsys)[0] == 0
    side = json.loads((tmp_path / "t1" / "T1.json").read_text())
    assert side["B1Map"] == str(tmp_path / "b1.nii.gz") and side["B1MapSha256"] == _sha256(tmp_path / "b1.nii.gz")


# --- summary, warnings, --json -------------------------------------------------------------------

def test_summary_shows_r2_and_voxels_at_bounds(ivim_phantom, tmp_path, capsys):
    code, out, err = _run(_ivim_args(ivim_phantom, tmp_path / "o"), capsys)
    assert code == 0 and "median R2 0.9" in out and "warning" not in err
    assert [ln for ln in out.splitlines() if "median Dstar" in ln and "at bound" in ln]


def test_wrong_bvalue_units_are_refused_before_the_fit(ivim_phantom, tmp_path, capsys):
    b = np.loadtxt(ivim_phantom / "ivim.bval")
    (tmp_path / "si.bval").write_text(" ".join(f"{v * 1e6:g}" for v in b))  # s/m2 instead of s/mm2
    code, out, err = _run(_ivim_args(ivim_phantom, tmp_path / "o", bval=tmp_path / "si.bval"), capsys)
    assert code == 2 and not (tmp_path / "o").exists()
    assert err.count("\n") == 1 and "si.bval" in err and "s/m2" in err and "divide them by 1e6" in err


def test_wrong_aif_timing_warns_and_says_why(dce_phantom, tmp_path, capsys):
    code, out, err = _run(_dce_args(dce_phantom, tmp_path / "o", "--aif", "parker", "--aif-delay", "60",
                                    "--fit-delay"), capsys)
    assert code == 0
    assert "warning: median R2" in err and "warning: delay is at its lower bound (-10 s)" in err
    assert "--aif-delay" in err and "--fit-delay" in err
    maps = ParameterMaps.load(tmp_path / "o")
    assert len(maps.warnings("hint")) == 3 and maps.warnings("hint")[-1] == "likely cause: hint"


def test_json_summary(ivim_phantom, tmp_path, capsys):
    js = tmp_path / "summary.json"
    code, out, err = _run(_ivim_args(ivim_phantom, tmp_path / "o", "--json", js, "--prefix", "s_"), capsys)
    assert code == 0
    s = json.loads(js.read_text())
    assert s["model"] == "IVIM" and s["method"] == "lsq" and s["n_voxels"] == 90
    assert 0.9 < s["median_r2"] <= 1 and s["converged_fraction"] > 0.9 and s["warnings"] == []
    assert s["parameters"]["D"]["unit"] == "mm2/s" and 5e-4 < s["parameters"]["D"]["median"] < 3e-3
    assert 0 <= s["parameters"]["Dstar"]["at_lower_bound"] <= 1 and "at_lower_bound" not in s["parameters"]["S0"]
    assert s["timings"]["total_s"] >= s["timings"]["fit_s"] > 0
    assert sorted(s["outputs"]) == sorted(str(p) for p in (tmp_path / "o").iterdir())
    # refuses to overwrite the summary without --force (nothing written), '-' prints it
    code, out, err = _run(_ivim_args(ivim_phantom, tmp_path / "o2", "--json", js), capsys)
    assert code == 2 and "summary.json exists" in err and not (tmp_path / "o2").exists()
    code, out, err = _run(_ivim_args(ivim_phantom, tmp_path / "o3", "--json", "-"), capsys)
    assert code == 0 and json.loads(out)["n_voxels"] == 90


# --- what the commands show ------------------------------------------------------------------------------

def test_dki_describes_each_shell():
    from qmri.models import DKI
    from qmri.models.diffusion.dki.design import hemisphere

    g1 = hemisphere(30)
    angle = 0.3  # the second shell samples other directions, as many protocols do
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    g = np.r_[np.zeros((3, 3)), g1, g1 @ rot.T]
    b = np.r_[np.zeros(3), np.full(30, 1000.0), np.full(30, 2000.0)]
    text = DKI(b, g).describe("wls")
    assert "63 volumes: 3 b=0, 2 shells (b=1000: 30 directions, b=2000: 30)" in text


def test_montage_colour_range_covers_the_whole_map(tmp_path):
    from qmri.plot import montage

    rng = np.random.default_rng(0)
    vp = np.stack([np.zeros((6, 6)), np.full((6, 6), 0.02), np.full((6, 6), 0.05)], axis=2)
    vp += rng.normal(0, 1e-4, vp.shape)  # the middle slice alone is nearly uniform
    ranges = montage({"vp": vp}, tmp_path / "m.png")
    lo, hi = ranges["vp"]
    assert lo < 0.001 and hi > 0.049  # the colours span the map, not the noise of the slice shown
    assert (tmp_path / "m.png").stat().st_size > 1000
