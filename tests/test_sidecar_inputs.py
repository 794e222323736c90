"""Acquisition read from the files beside a series (dcm2niix / BIDS): no flags needed, and a flag that
contradicts the sidecar is refused naming both."""

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from qmri.bids import companions, reconcile
from qmri.cli.main import main
from qmri.errors import QMRIInputError
from qmri.models import VFA

FA = [2.0, 5.0, 10.0, 15.0]
TR = 0.005


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _map(folder, name):
    return np.asarray(nib.load(folder / f"{name}.nii.gz").dataobj, dtype=float)


@pytest.fixture(scope="module")
def vfa_folder(tmp_path_factory):
    """A dcm2niix-style VFA series: vfa.nii.gz with vfa.json (FlipAngle per volume, TR)."""
    d = tmp_path_factory.mktemp("vfa")
    rng = np.random.default_rng(1)
    t1 = rng.uniform(0.5, 2.0, (3, 2, 2))
    data = VFA(FA, TR).signal(dict(M0=2000.0, T1=t1))
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)), d / "vfa.nii.gz")
    (d / "vfa.json").write_text(json.dumps({"FlipAngle": FA, "RepetitionTimeExcitation": TR, "Modality": "MR"}))
    return d, t1


def test_vfa_fits_from_sidecar_alone(vfa_folder, tmp_path, capsys):
    d, t1 = vfa_folder
    code, out, err = _run(["t1", d / "vfa.nii.gz", "--out-dir", tmp_path / "o"], capsys)
    assert code == 0, err
    assert "flip angles (deg) 2,5,10,15 from FlipAngle in" in err and "TR (s) 0.005 from RepetitionTimeExcitation" in err
    np.testing.assert_allclose(_map(tmp_path / "o", "T1"), t1, rtol=1e-4)


def test_agreeing_flag_is_accepted_contradicting_flag_is_refused(vfa_folder, tmp_path, capsys):
    d, _ = vfa_folder
    code, _, err = _run(["t1", d / "vfa.nii.gz", "--tr", "0.005", "--out-dir", tmp_path / "a"], capsys)
    assert code == 0, err
    code, _, err = _run(["t1", d / "vfa.nii.gz", "--fa", "3,5,10,15", "--out-dir", tmp_path / "b"], capsys)
    assert code == 2
    assert "--fa 3,5,10,15 contradicts FlipAngle in" in err and "vfa.json (2,5,10,15)" in err
    assert not (tmp_path / "b").exists()
    code, _, err = _run(["t1", d / "vfa.nii.gz", "--tr", "0.006", "--out-dir", tmp_path / "c"], capsys)
    assert code == 2 and "--tr 0.006 contradicts RepetitionTimeExcitation" in err
    # --ignore-sidecar: the flags alone count, and missing ones are named
    code, _, err = _run(["t1", d / "vfa.nii.gz", "--ignore-sidecar", "--out-dir", tmp_path / "d"], capsys)
    assert code == 2 and "--fa and --tr needed" in err


def test_missing_acquisition_is_named(tmp_path, capsys):
    img = tmp_path / "s.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((2, 2, 1, 5), np.float32), np.eye(4)), img)
    code, _, err = _run(["ivim", img, "--out-dir", tmp_path / "o"], capsys)
    assert code == 2 and "no b-values: give --bval FILE.bval (or put s.bval beside the series)" in err
    code, _, err = _run(["dce", img, "--aif", "parker", "--input", "concentration", "--out-dir", tmp_path / "o"],
                        capsys)
    assert code == 2 and "frame times needed: give --time FILE or --tr-frame SECONDS" in err


@pytest.fixture(scope="module")
def dce_folder(tmp_path_factory):
    """The DCE phantom's signal series as dcm2niix would write it: series.nii.gz + series.json."""
    d = tmp_path_factory.mktemp("dce")
    assert main(["phantom", "dce", "--out-dir", str(d / "ph"), "--block", "2", "2", "1"]) == 0
    acq = json.loads((d / "ph" / "dce.json").read_text())["acquisition"]
    shutil.copy(d / "ph" / "dce.nii.gz", d / "series.nii.gz")
    times = np.loadtxt(d / "ph" / "times.txt")
    (d / "series.json").write_text(json.dumps({"FlipAngle": acq["FA"], "RepetitionTimeExcitation": acq["TR"],
                                               "VolumeTiming": times.tolist()}))
    return d, acq


def test_dce_needs_no_acquisition_flags(dce_folder, tmp_path, capsys):
    d, acq = dce_folder
    common = ["--aif", d / "ph" / "aif.csv", "--t10", acq["T10"], "--baseline", acq["n_baseline"],
              "--mask", d / "ph" / "mask.nii.gz", "--quiet"]
    code, _, err = _run(["dce", d / "series.nii.gz", *common, "--out-dir", tmp_path / "side"], capsys)
    assert code == 0, err
    code, _, err = _run(["dce", d / "ph" / "dce.nii.gz", *common, "--time", d / "ph" / "times.txt", "--fa", acq["FA"],
                         "--tr", acq["TR"], "--out-dir", tmp_path / "flags"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(_map(tmp_path / "side", "Ktrans"), _map(tmp_path / "flags", "Ktrans"))
    code, _, err = _run(["dce", d / "series.nii.gz", *common, "--tr-frame", "3", "--out-dir", tmp_path / "x"], capsys)
    assert code == 2 and "--tr-frame" in err and "contradicts VolumeTiming in" in err


def test_dwi_folder_fits_without_flags(tmp_path, capsys):
    assert main(["phantom", "ivim", "--out-dir", str(tmp_path / "ph"), "--block", "2", "2", "1"]) == 0
    code, _, err = _run(["ivim", tmp_path / "ph" / "ivim.nii.gz", "--out-dir", tmp_path / "a"], capsys)
    assert code == 0 and "b-values from" in err and "ivim.bval (beside the series)" in err
    code, _, err = _run(["ivim", tmp_path / "ph" / "ivim.nii.gz", "--bval", tmp_path / "ph" / "ivim.bval",
                         "--out-dir", tmp_path / "b"], capsys)
    assert code == 0
    np.testing.assert_array_equal(_map(tmp_path / "a", "D"), _map(tmp_path / "b", "D"))


def test_bids_inheritance_and_frame_timing(tmp_path):
    root = tmp_path / "ds"
    anat = root / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.11.0"}')
    (root / "dce.json").write_text(json.dumps({"FlipAngle": 20, "RepetitionTime": 0.004}))
    (anat / "sub-01_dce.json").write_text(json.dumps({"FlipAngle": 25}))
    (anat / "sub-01_acq-other_dce.json").write_text(json.dumps({"FlipAngle": 99}))
    series = anat / "sub-01_dce.nii.gz"
    series.touch()
    found = companions(series)
    assert [p.name for p in found.sidecars] == ["dce.json", "sub-01_dce.json"]
    side = found.sidecar()
    assert side.flip_angle() == 25.0  # the most specific file wins
    # a RepetitionTime below 0.5 s without RepetitionTimeExcitation is the excitation TR, not a frame interval
    assert side.frame_times(10) == (None, None)
    assert side.excitation_tr(frame_interval_possible=True) == (0.004, "RepetitionTime")
    (anat / "sub-01_dce.json").write_text(json.dumps({"RepetitionTimeExcitation": 0.004, "RepetitionTime": 3.5,
                                                      "AcquisitionTime": ["23:59:58.0", "00:00:01.5"]}))
    t, key = companions(series).sidecar().frame_times(2)
    assert key == "AcquisitionTime" and np.allclose(t, [0, 3.5])
    assert companions(series, use=False).sidecars == []


def test_reconcile_rules():
    assert reconcile(None, 12.0, flag="--fa", where="FlipAngle in x.json", what="fa") == 12.0
    assert reconcile(12.05, 12.0, flag="--fa", where="FlipAngle in x.json", what="fa") == 12.05  # within 1%
    with pytest.raises(QMRIInputError, match=r"--fa 13 contradicts FlipAngle in x.json \(12\)"):
        reconcile(13.0, 12.0, flag="--fa", where="FlipAngle in x.json", what="fa")


def test_b0_threshold(tmp_path):
    from qmri.models import IVIM

    b = np.array([5.0, 10, 20, 50, 100, 200, 400, 800])
    assert IVIM(b).bvals[0] == 5.0  # IVIM keeps its low b-values by default
    model = IVIM(b, b0_threshold=5)
    assert model.bvals[0] == 0.0 and model.bvals[1] == 10.0
    assert model.provenance()["b0_threshold"] == 5.0
    with pytest.raises(QMRIInputError, match="b0-threshold"):
        IVIM(b, b0_threshold=-1)


def test_logging_levels_and_log_file(vfa_folder, tmp_path, capsys):
    d, _ = vfa_folder
    log = tmp_path / "run.log"
    code, out, err = _run(["t1", d / "vfa.nii.gz", "--out-dir", tmp_path / "a", "--quiet", "--log-file", log], capsys)
    assert code == 0 and out == "" and err == ""  # --quiet: no summary, no information, no warning here
    text = log.read_text()
    assert "INFO qmri.bids: flip angles (deg) 2,5,10,15 from FlipAngle in" in text
    code, out, err = _run(["t1", d / "vfa.nii.gz", "--out-dir", tmp_path / "b"], capsys)
    assert "model VFA" in out and "FlipAngle" not in out and "qmri t1: flip angles" in err
