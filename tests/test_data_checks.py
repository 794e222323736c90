"""Honest answers on real acquisitions: b-value units checked before any diffusion fit, DKI independent
of the scale of the data, failed T1 voxels failing only their DCE voxels, AIFs without signal refused,
warnings that name what the data show and the option that helps, ``--mask auto``."""

import json

import nibabel as nib
import numpy as np
import pytest

from qmri.cli.main import main
from qmri.errors import QMRIInputError


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def small_101D():
    """dipy's real multi-shell brain sample (ships with dipy: no download): b = 15-4065 s/mm2."""
    from dipy.data import get_fnames

    return tuple(get_fnames(name="small_101D"))


# --- b-value units: one check for every diffusion model --------------------------------------------

@pytest.mark.parametrize("factor, unit, advice", [(1e6, "s/m2", "divide them by 1e6"),
                                                  (1e-3, "ms/um2", "multiply them by 1000")])
@pytest.mark.parametrize("command", ["adc", "ivim", "stretched", "dki"])
def test_bvalues_in_other_units_are_refused_naming_the_file(small_101D, tmp_path, capsys, command, factor, unit,
                                                           advice):
    data, bval, bvec = small_101D
    wrong = tmp_path / "wrong.bval"
    wrong.write_text(" ".join(f"{v * factor:g}" for v in np.loadtxt(bval)))
    extra = ["--bvec", bvec] if command == "dki" else []
    code, out, err = _run([command, data, "--bval", wrong, *extra, "--out-dir", tmp_path / "o"], capsys)
    assert code == 2 and not (tmp_path / "o").exists()
    assert err.count("\n") == 1 and err.startswith(f"qmri: error: {wrong}: ")
    assert unit in err and advice in err and "--trace" not in err


def test_bvalues_in_other_units_are_refused_by_the_models():
    from qmri.models import ADC, DKI, IVIM
    from qmri.models.diffusion.dki.design import hemisphere

    b = np.array([0, 10, 50, 100, 200, 400, 800.0])
    for wrong in (b * 1e6, b / 1000):
        for cls in (ADC, IVIM):
            with pytest.raises(QMRIInputError, match="s/m2|ms/um2"):
                cls(wrong)
    g = np.r_[np.zeros((1, 3)), hemisphere(30), hemisphere(30)]
    with pytest.raises(QMRIInputError, match="s/m2"):
        DKI(np.r_[0, np.full(30, 1e9), np.full(30, 2e9)], g)


# --- DKI: the same maps at any scale of the data ---------------------------------------------------

@pytest.mark.parametrize("method", ["wls", "ols", "cwls"])
def test_dki_linear_fits_do_not_depend_on_the_scale_of_the_data(small_101D, method):
    from qmri.models import DKI

    data, bval, bvec = small_101D
    Y = nib.load(data).get_fdata().reshape(-1, 102)
    model = DKI(np.loadtxt(bval), np.loadtxt(bvec).T)
    ref = model.fit(Y, method=method)
    assert np.all(ref.status == 0)
    for scale in (1e-35, 1e-6, 1e6, 1e35):
        maps = model.fit(Y * scale, method=method)
        assert np.array_equal(maps.status, ref.status)
        for name in ("MD", "FA", "MK"):
            np.testing.assert_allclose(maps[name], ref[name], rtol=1e-8, atol=1e-12, err_msg=f"{name} x{scale:g}")
        np.testing.assert_allclose(maps["S0"], ref["S0"] * scale, rtol=1e-8)


def test_dki_voxel_without_signal_fails():
    from qmri.models import DKI

    from qmri.models.diffusion.dki.phantom import dki_phantom

    ph = dki_phantom(snr=float("inf"), block=(1, 1, 1))
    model = DKI.for_phantom(ph)
    Y = ph.data.reshape(-1, ph.data.shape[-1])[:2].copy()
    Y[1] = 0.0
    maps = model.fit(Y, method="wls")
    assert maps.status[0] == 0 and maps.status[1] == 2 and np.isnan(maps["MD"][1])


# --- per-voxel input maps with unusable voxels ------------------------------------------------------

def test_b1_map_with_unusable_voxels_is_reported(tmp_path, capsys):
    from qmri.models import VFA

    fa = np.array([3.0, 8.0, 15.0])
    sig = VFA(fa, 0.005).signal({"M0": 1000.0, "T1": 1.2}) * np.ones((3, 2, 1, 1))
    nib.save(nib.Nifti1Image(sig.astype(np.float32), np.eye(4)), tmp_path / "vfa.nii.gz")
    b1 = np.full((3, 2, 1), 1.0, np.float32)
    b1[0, 0, 0], b1[1, 0, 0] = np.nan, 0.0
    nib.save(nib.Nifti1Image(b1, np.eye(4)), tmp_path / "b1.nii.gz")
    code, out, err = _run(["t1", tmp_path / "vfa.nii.gz", "--fa", "3,8,15", "--tr", "0.005", "--b1",
                           tmp_path / "b1.nii.gz", "--out-dir", tmp_path / "o"], capsys)
    assert code == 0
    assert f"{tmp_path / 'b1.nii.gz'}: 2 of the 6 fitted voxels have no usable B1" in err
    status = np.asarray(nib.load(tmp_path / "o" / "status.nii.gz").dataobj)
    assert status[0, 0, 0] == 2 and status[1, 0, 0] == 2 and np.sum(status == 2) == 2


# --- --mask auto and fitted voxels without signal ----------------------------------------------------

def _dwi_with_background(tmp_path):
    """A 40x40x16 ADC series: a ball of tissue (radius 12 voxels, S0 1000, ADC 1e-3) in background noise
    (sigma 10)."""
    rng = np.random.default_rng(0)
    b = np.array([0, 0, 200, 500, 800, 1000.0])
    x, y, z = np.meshgrid(np.arange(40) - 19.5, np.arange(40) - 19.5, (np.arange(16) - 7.5) * 2, indexing="ij")
    tissue = x ** 2 + y ** 2 + z ** 2 < 12 ** 2
    s = np.where(tissue[..., None], 1000.0 * np.exp(-b * 1e-3), 0.0)
    noisy = np.abs(s + rng.normal(0, 10, s.shape) + 1j * rng.normal(0, 10, s.shape))
    nib.save(nib.Nifti1Image(noisy.astype(np.float32), np.eye(4)), tmp_path / "dwi.nii.gz")
    (tmp_path / "dwi.bval").write_text(" ".join(f"{v:g}" for v in b))
    return tmp_path / "dwi.nii.gz", tissue


def test_background_voxels_are_reported_naming_mask_auto(tmp_path, capsys):
    dwi, tissue = _dwi_with_background(tmp_path)
    code, out, err = _run(["adc", dwi, "--out-dir", tmp_path / "o"], capsys)
    assert code == 0
    n_bg = int((~tissue).sum())
    assert f"{n_bg} of the {tissue.size} fitted voxels ({100 * n_bg / tissue.size:.1f}%) have no signal" in err
    assert "--mask auto" in err


def test_mask_auto_masks_the_b0_image_with_dipy_median_otsu_and_writes_it(tmp_path, capsys):
    dwi, tissue = _dwi_with_background(tmp_path)
    code, out, err = _run(["adc", dwi, "--mask", "auto", "--out-dir", tmp_path / "o"], capsys)
    assert code == 0 and "no signal" not in err
    mask = np.asarray(nib.load(tmp_path / "o" / "mask.nii.gz").dataobj) > 0
    assert np.mean(mask == tissue) > 0.95
    side = json.loads((tmp_path / "o" / "ADC.json").read_text())
    assert side["Mask"] == "auto" and side["MaskMethod"] == "dipy.segment.mask.median_otsu"
    assert side["MaskParameters"] == {"median_radius": 2, "numpass": 1} and side["MaskVoxels"] == int(mask.sum())
    assert "b<=50" in side["MaskReference"] and side["MaskBackground"] is True
    assert "mask.nii.gz" in side["ResultSet"]["Files"]
    adc = np.asarray(nib.load(tmp_path / "o" / "ADC.nii.gz").dataobj)
    assert np.all(np.isnan(adc[~mask])) and np.all(np.isfinite(adc[mask]))
    # the same from Python; and the result set is one: without --force nothing is overwritten
    from qmri.models import ADC
    from qmri.workflows import fit_files

    outcome = fit_files(ADC, dwi, out_dir=tmp_path / "py", mask="auto")
    assert np.array_equal(outcome.maps.mask, mask) and (tmp_path / "py" / "mask.nii.gz").exists()
    assert _run(["adc", dwi, "--mask", "auto", "--out-dir", tmp_path / "o"], capsys)[0] == 2


def test_mask_auto_keeps_an_image_without_background(small_101D, tmp_path, capsys):
    """small_101D is a crop of brain (b≈0 signal 179-1004, all tissue): Otsu would split white matter
    from CSF; the automatic mask keeps every voxel and no voxel is called background."""
    data, bval, bvec = small_101D
    code, out, err = _run(["adc", data, "--bval", bval, "--mask", "auto", "--out-dir", tmp_path / "o"], capsys)
    assert code == 0 and "voxels fitted 600" in out and "no signal" not in err
    assert json.loads((tmp_path / "o" / "ADC.json").read_text())["MaskBackground"] is False


def test_mask_auto_for_dce_uses_otsu_of_the_baseline(tmp_path, capsys):
    assert main(["phantom", "dce", "--out-dir", str(tmp_path / "ph"), "--block", "2", "2", "1"]) == 0
    capsys.readouterr()
    ph = tmp_path / "ph"
    img = nib.load(ph / "dce.nii.gz")
    data = np.zeros((img.shape[0] + 4,) + img.shape[1:], np.float32)  # 4 rows of empty background added
    data[4:] = np.asarray(img.dataobj)
    nib.save(nib.Nifti1Image(data, img.affine), tmp_path / "dce.nii.gz")
    args = ["dce", tmp_path / "dce.nii.gz", "--time", ph / "times.txt", "--aif", ph / "aif.csv", "--t10", "1",
            "--fa", "30", "--tr", "0.005", "--baseline", "10", "--out-dir"]
    code, out, err = _run(args + [tmp_path / "o", "--mask", "auto"], capsys)
    assert code == 0, err
    mask = np.asarray(nib.load(tmp_path / "o" / "mask.nii.gz").dataobj) > 0
    assert not mask[:4].any() and mask[4:].all()
    side = json.loads((tmp_path / "o" / "Ktrans.json").read_text())
    assert side["MaskMethod"] == "skimage.filters.threshold_otsu" and "baseline" in side["MaskReference"]


def test_cohort_config_takes_mask_auto(tmp_path):
    from qmri.cohort import load_config
    from qmri.cohort.example import EXAMPLE_CONFIG

    line = 'mask = { dataset = "derivatives/masks", datatype = "dwi", suffix = "mask", label = "tumour" }'
    text = EXAMPLE_CONFIG.replace(line, 'mask = "auto"', 1)
    assert text != EXAMPLE_CONFIG
    (tmp_path / "steps.toml").write_text(text)
    assert load_config(tmp_path / "steps.toml").fits["ivim"].mask == "auto"


# --- warnings that name what the data show ------------------------------------------------------------

def _fit(command, small_101D, tmp_path, capsys, *extra):
    data, bval, bvec = small_101D
    args = [command, data, "--bval", bval, *(["--bvec", bvec] if command == "dki" else []), *extra,
            "--out-dir", tmp_path / command]
    code, out, err = _run(args, capsys)
    assert code == 0, err
    return out, err


def test_small_101D_warnings_name_the_b_range_and_bmax_not_units(small_101D, tmp_path, capsys):
    """b 15-4065 s/mm2 in the right units: the cause is the b range (and for IVIM the single b below 200),
    each named with the option that helps."""
    for command, limit in (("adc", 1500), ("ivim", 1500), ("dki", 3000)):
        out, err = _fit(command, small_101D, tmp_path, capsys)
        assert "not in s/mm2" not in err
        assert "b up to 4065 s/mm2" in err and "beyond the range of the" in err and f"--bmax {limit}" in err
    out, err = _fit("ivim", small_101D, tmp_path / "again", capsys)
    assert "1 distinct b-value(s) below 200 s/mm2 (15)" in err and "qmri adc --bmin 200" in err
    # the warning's share is the summary's, rounded alike
    share = next(ln for ln in out.splitlines() if "median Dstar" in ln).split("at bound ")[1]
    assert f"in {share} of the fitted voxels" in err
    # within the model's range: no b-range warning
    out, err = _fit("dki", small_101D, tmp_path / "bmax", capsys, "--bmax", "3000")
    assert "beyond the range" not in err


@pytest.mark.parametrize("fill", [np.nan, 0.0])
def test_series_without_signal_says_so(tmp_path, capsys, fill):
    b = np.array([0, 50, 200, 500, 1000.0])
    nib.save(nib.Nifti1Image(np.full((3, 3, 1, 5), fill, np.float32), np.eye(4)), tmp_path / "dwi.nii.gz")
    (tmp_path / "dwi.bval").write_text(" ".join(f"{v:g}" for v in b))
    code, out, err = _run(["ivim", tmp_path / "dwi.nii.gz", "--out-dir", tmp_path / "o"], capsys)
    assert code == 0 and "failed 100.0%" in out
    assert "likely cause: the series holds NaN, infinite or no values" in err and "s/mm2 (e" not in err
    assert "volume order" not in err


def test_narrowed_bounds_are_named_as_the_cause(tmp_path, capsys):
    assert main(["phantom", "adc", "--out-dir", str(tmp_path / "ph"), "--block", "2", "2", "1"]) == 0
    capsys.readouterr()
    ph = tmp_path / "ph"
    code, out, err = _run(["adc", ph / "adc.nii.gz", "--bval", ph / "adc.bval", "--mask", ph / "mask.nii.gz",
                           "--method", "lsq", "--bounds", "ADC=0.0001:0.0002", "--out-dir", tmp_path / "o"], capsys)
    assert code == 0 and "ADC is at its upper bound" in err
    assert "likely cause: ADC bounds narrowed with --bounds to 0.0001:0.0002 (default 0:0.005)" in err


def _dce_args(ph, series, out, *extra):
    return ["dce", series, "--time", ph / "times.txt", "--t10", "1", "--fa", "30", "--tr", "0.005", "--baseline", "10",
            "--out-dir", out, *extra]


@pytest.fixture(scope="module")
def dce_phantom(tmp_path_factory):
    d = tmp_path_factory.mktemp("dce")
    assert main(["phantom", "dce", "--out-dir", str(d), "--block", "2", "2", "1"]) == 0
    return d


def test_dce_non_enhancing_voxels_are_the_cause_not_aif_timing(dce_phantom, tmp_path, capsys):
    """Two thirds of the fitted voxels do not enhance (baseline signal and the series' noise), as in a
    breast slice masked loosely: the warning names them and --mask, not the AIF."""
    ph = dce_phantom
    capsys.readouterr()
    img = nib.load(ph / "dce.nii.gz")
    d = np.asarray(img.dataobj, dtype=np.float64)
    rng = np.random.default_rng(1)
    flat = d[..., :10].mean(-1, keepdims=True) + rng.normal(0, d[..., :10].std(-1).mean(), d.shape)
    nib.save(nib.Nifti1Image(np.concatenate([d, flat, flat]).astype(np.float32), img.affine), tmp_path / "s.nii.gz")
    code, out, err = _run(_dce_args(ph, tmp_path / "s.nii.gz", tmp_path / "o", "--aif", ph / "aif.csv"), capsys)
    assert code == 0 and "warning: median R2" in err
    assert "of the fitted voxels barely enhance" in err and "restrict --mask" in err and "AIF timing" not in err
    # Ktrans = 0 leaves ve undetermined: NaN there (status converged), counted in a warning
    ktrans, ve = (np.asarray(nib.load(tmp_path / "o" / f"{k}.nii.gz").dataobj) for k in ("Ktrans", "ve"))
    status = np.asarray(nib.load(tmp_path / "o" / "status.nii.gz").dataobj)
    zero = (ktrans <= 1e-6 * 5.0) & (status == 0)  # Ktrans within 1e-6 of its range (0-5 /min) above 0
    assert zero.sum() > 0 and np.all(np.isnan(ve[zero])) and np.all(np.isfinite(ve[(ktrans > 0.01) & (status == 0)]))
    assert f"ve (and kep) not determined in {int(zero.sum())} of the" in err


def test_dce_aif_timing_is_named_when_the_bolus_arrival_differs(dce_phantom, tmp_path, capsys):
    ph = dce_phantom
    capsys.readouterr()
    code, out, err = _run(_dce_args(ph, ph / "dce.nii.gz", tmp_path / "o", "--mask", ph / "mask.nii.gz", "--aif",
                                    "parker", "--aif-delay", "40"), capsys)
    assert code == 0 and "likely cause: AIF timing: the bolus reaches the enhancing voxels at" in err
    assert "--aif-delay" in err and "--fit-delay" in err and "barely enhance" not in err
    code, out, err = _run(_dce_args(ph, ph / "dce.nii.gz", tmp_path / "o2", "--mask", ph / "mask.nii.gz", "--aif",
                                    ph / "aif.csv"), capsys)
    assert code == 0 and "warning" not in err


@pytest.mark.parametrize("aif, message", [
    ("time_s,cp_mM\n0,0\n150,0\n400,0\n", "no signal over the series (peak 0 mM"),
    ("time_s,cp_mM\n0,0\n150,-1\n400,-0.5\n", "zero or negative"),
    ("time_s,cp_mM\n0,0\n299,0\n310,5\n400,1\n", "the bolus arrives after the last frame"),
])
def test_aif_without_signal_over_the_series_is_refused(dce_phantom, tmp_path, capsys, aif, message):
    ph = dce_phantom
    capsys.readouterr()
    (tmp_path / "aif.csv").write_text(aif)
    code, out, err = _run(_dce_args(ph, ph / "dce.nii.gz", tmp_path / "o", "--aif", tmp_path / "aif.csv"), capsys)
    assert code == 2 and err.count("\n") == 1 and f"AIF file {tmp_path / 'aif.csv'}" in err and message in err
    assert not (tmp_path / "o").exists()


def test_population_aif_starting_after_the_last_frame_is_refused(dce_phantom, tmp_path, capsys):
    ph = dce_phantom
    capsys.readouterr()
    code, out, err = _run(_dce_args(ph, ph / "dce.nii.gz", tmp_path / "o", "--aif", "parker", "--aif-delay", "400"),
                          capsys)
    assert code == 2 and "--aif parker --aif-delay 400: the AIF starts after the last frame" in err


def test_dce_model_refuses_an_aif_without_signal():
    from qmri.models.dce import DCE

    t = np.arange(0, 300, 2.0)
    for cp in (np.zeros_like(t), -np.ones_like(t)):
        with pytest.raises(QMRIInputError, match="no signal over the series"):
            DCE(t, cp, "tofts")


@pytest.mark.parametrize("command", ["adc", "ivim"])
def test_no_raw_numpy_warnings_on_odd_values(tmp_path, capsys, command):
    """inf, negative and near-overflow voxels: no NumPy RuntimeWarning reaches the user; maps beyond
    float32 are reported as such."""
    import warnings

    b = np.array([0, 20, 50, 200, 500, 800, 1000.0])
    rng = np.random.default_rng(0)
    clean = 1000.0 * np.exp(-b * 1e-3) * (1 + 0.01 * rng.normal(size=(4, 4, 2, b.size)))
    odd = clean.copy()
    odd[0, 0, 0, 3], odd[1, 1, 0], odd[2, 2, 0, 0] = np.inf, -5.0, 1e308
    for name, data in (("odd", odd), ("big", clean * 1e297)):
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / f"{name}.nii.gz")
        (tmp_path / f"{name}.bval").write_text(" ".join(f"{v:g}" for v in b))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code, out, err = _run([command, tmp_path / f"{name}.nii.gz", "--out-dir", tmp_path / name], capsys)
        assert code == 0, err
        assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    assert "S0: 32 voxel(s) beyond the float32 range" in err
