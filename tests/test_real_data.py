"""Real acquisitions: the cases of ``qmri validate --suite real`` (one test per case), and every
applicable console command run on the same data to the end (exit 0, no traceback)."""

import json

import nibabel as nib
import numpy as np
import pytest

from qmri.validation import real
from qmri.validation.runner import SUITES, run_case

from conftest import case_params, check_case, run_qmri


@pytest.mark.parametrize("case", case_params(real.cases()))
def test_real_case(case):
    check_case(case)


def test_real_suite_is_a_validate_choice_and_ships_its_data():
    assert "real" in SUITES
    kruk = real.DATA / "kruk"
    assert {p.name for p in kruk.iterdir()} == {"curves.csv", "scans.csv", "SOURCE.txt", "LICENSE"}
    assert "Apache License" in (kruk / "LICENSE").read_text()
    assert sum(p.stat().st_size for p in real.DATA.rglob("*") if p.is_file()) < 200_000
    scans = real.kidney_scans()
    assert len(scans) == 12 and all(s["field_strength_T"] == 3.0 for s in scans.values())
    for s in scans.values():
        assert s["time"].size == s["aorta"].size == s["LK"].size == s["RK"].size >= 90
        assert np.all(np.diff(s["time"]) > 0)


def test_gfr_agreement_fails_when_the_units_are_wrong(monkeypatch):
    """The agreement rule detects a systematic error: isotope GFR left in mL/s (as stored upstream)."""
    original = real.fit_kidney.__wrapped__

    def in_ml_per_s(name):
        out = original(name)
        out["iso"] = out["iso"] / 60.0
        return out

    monkeypatch.setattr(real, "fit_kidney", in_ml_per_s)
    outcome = run_case(next(c for c in real.cases() if c.id == "kidney-gfr-agreement")).outcome
    assert not outcome.passed and "mean difference" in outcome.message


def test_ranges_fail_a_median_outside_and_name_the_source():
    out = real.judge_ranges({"MD": 2.5e-3}, "brain")
    assert not out.passed and "Pierpaoli" in out.message and "2.5" in out.message


def _qmri(*args):
    return run_qmri(*args)


def _ok(r):
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout[-2000:] + r.stderr[-2000:]


@pytest.mark.slow
def test_every_diffusion_command_and_habitat_run_on_real_brain_data(tmp_path):
    series, bval, bvec = real.brain_files()
    for command, extra in (("dki", ["--bvec", bvec, "--bmax", 2500]), ("adc", ["--bmax", 1000]),
                           ("ivim", ["--bmax", 1000]), ("stretched", ["--bmax", 1000])):
        _ok(_qmri(command, series, "--bval", bval, *extra, "--out-dir", tmp_path / command))
    mask = real._write_mask(tmp_path / "brain.nii.gz", real.brain_mask(), series)
    _ok(_qmri("habitat", "--maps", f"{tmp_path / 'dki'}:MD,FA,MK", "--mask", mask, "--k", 2,
              "--out-dir", tmp_path / "habitat"))
    labels = np.asarray(nib.load(tmp_path / "habitat" / "habitats.nii.gz").dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2} and (labels > 0).any()


def _kidney_args(inputs):
    return [inputs["series"], "--mask", inputs["mask"], "--time", inputs["time"], "--aif", inputs["aif"],
            "--t1", inputs["t1"], "--fa", inputs["fa"], "--tr", inputs["tr"], "--baseline", inputs["baseline"],
            "--r1", inputs["r1"], "--hct", inputs["hct"]]


@pytest.mark.slow
def test_dce_and_t1_commands_run_on_real_data(tmp_path):
    scan = real.kidney_scans()["kruk-007-single"]
    inputs = real.write_kidney_inputs(scan, tmp_path / "in")
    for model in ("patlak", "tofts", "etm", "2cum", "2cxm"):
        _ok(_qmri("dce", *_kidney_args(inputs), "--model", model, "--out-dir", tmp_path / model))
    ktrans = np.asarray(nib.load(tmp_path / "patlak" / "Ktrans.nii.gz").dataobj).ravel()
    np.testing.assert_allclose(ktrans[1:], real.fit_kidney("kruk-007-single")["Ktrans"], rtol=1e-5)
    # qmri t1 on the OSIPI brain VFA voxels, flip angles and TR from the sidecar
    from qmri import io
    from qmri.validation import osipi

    signal = np.array([r["s"] for r in osipi.read_rows(*real.T1_FILE)])[:, None, None, :]

    io.write_map(tmp_path / "vfa.nii.gz", signal)
    (tmp_path / "vfa.json").write_text(json.dumps({"FlipAngle": [2, 5, 12], "RepetitionTimeExcitation": 0.0054}))
    _ok(_qmri("t1", tmp_path / "vfa.nii.gz", "--out-dir", tmp_path / "t1"))
    t1 = np.asarray(nib.load(tmp_path / "t1" / "T1.nii.gz").dataobj).ravel()
    assert np.all(np.isfinite(t1)) and np.all(t1 > 0)


@pytest.mark.slow
def test_dce_on_real_kidneys_fails_the_voxel_whose_t1_is_nan(tmp_path):
    """A T1 map with a NaN voxel (as ``qmri t1`` writes where its fit fails) gives a failed DCE
    voxel, counted, and the other voxels fitted: not a refusal of the whole run."""
    scan = dict(real.kidney_scans()["kruk-007-single"], RK_T1_s=float("nan"))
    inputs = real.write_kidney_inputs(scan, tmp_path / "in")
    r = _qmri("dce", *_kidney_args(inputs), "--model", "patlak", "--out-dir", tmp_path / "out")
    _ok(r)
    ktrans = np.asarray(nib.load(tmp_path / "out" / "Ktrans.nii.gz").dataobj).ravel()
    status = np.asarray(nib.load(tmp_path / "out" / "status.nii.gz").dataobj).ravel()
    assert np.isfinite(ktrans[1]) and status[1] != 2  # left kidney fitted
    assert np.isnan(ktrans[2]) and status[2] == 2  # right kidney: NaN T1, failed
