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
