"""``qmri dki --tensors``: tensor images round-trip through dipy, and MRtrix3 reads them as it writes them."""

import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest

from qmri.cli.main import main
from qmri.maps import ParameterMaps
from qmri.models.diffusion.acquisition import fsl_bvec_frame
from qmri.models.diffusion.dki.tensors import MRTRIX_DT_NAMES, MRTRIX_KT_NAMES, kt_elements, kt_tensor

AXIS = {"x": 0, "y": 1, "z": 2}


def _load(path):
    return np.asarray(nib.load(path).dataobj, dtype=np.float64)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    d = tmp_path_factory.mktemp("tensors")
    assert main(["phantom", "dki", "--out-dir", str(d / "ph"), "--snr", "inf", "--block", "2", "2", "1"]) == 0
    # an oblique, positive-determinant affine, so that the frame matters
    img = nib.load(d / "ph" / "dki.nii.gz")
    c, s = np.cos(0.4), np.sin(0.4)
    affine = np.array([[2 * c, -2 * s, 0, 10], [2 * s, 2 * c, 0, -5], [0, 0, 3, 1], [0, 0, 0, 1.0]])
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32), affine), d / "dwi.nii.gz")
    for ext in ("bval", "bvec"):
        shutil.copy(d / "ph" / f"dki.{ext}", d / f"dwi.{ext}")
    nib.save(nib.Nifti1Image(np.asarray(nib.load(d / "ph" / "mask.nii.gz").dataobj), affine), d / "mask.nii.gz")
    assert main(["dki", str(d / "dwi.nii.gz"), "--mask", str(d / "mask.nii.gz"), "--tensors", "--predicted",
                 "--out-dir", str(d / "fit"), "--quiet"]) == 0
    return d, affine


def _bvec_frame_tensors(d, affine):
    """The written DT/KT (world frame, MRtrix order) back in the b-vector frame, dipy order."""
    M = fsl_bvec_frame(affine)
    dt_w, kt_w = _load(d / "fit" / "DT.nii.gz"), _load(d / "fit" / "KT.nii.gz")
    D = np.empty(dt_w.shape[:3] + (3, 3))
    for k, name in enumerate(MRTRIX_DT_NAMES):
        i, j = AXIS[name[0]], AXIS[name[1]]
        D[..., i, j] = D[..., j, i] = dt_w[..., k]
    D = np.einsum("ai,bj,...ab->...ij", M, M, D)  # M^T D M
    from qmri.models.diffusion.dki.design import KT_NAMES

    kt_dipy_world = kt_w[..., [MRTRIX_KT_NAMES.index(k) for k in KT_NAMES]]
    W = np.einsum("ai,bj,ck,dl,...abcd->...ijkl", M, M, M, M, kt_tensor(kt_dipy_world), optimize=True)
    return D, kt_elements(W)


def test_tensors_round_trip_through_dipy(fitted):
    from dipy.core.gradients import gradient_table
    from dipy.io import read_bvals_bvecs
    from dipy.reconst import dki

    d, affine = fitted
    mask = _load(d / "mask.nii.gz") > 0
    D, kt = _bvec_frame_tensors(d, affine)
    evals, evecs = np.linalg.eigh(D[mask])
    evals, evecs = evals[:, ::-1], evecs[:, :, ::-1]
    params = np.concatenate([evals, evecs.reshape(-1, 9), kt[mask]], axis=1)
    maps = ParameterMaps.load(d / "fit")
    # dipy's metrics of the written tensors equal qmri's maps
    np.testing.assert_allclose(dki.mean_kurtosis(params, analytical=True), maps["MK"][mask], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dki.axial_kurtosis(params, analytical=True), maps["AK"][mask], rtol=1e-4, atol=1e-5)
    from dipy.reconst.dti import fractional_anisotropy

    np.testing.assert_allclose(fractional_anisotropy(evals), maps["FA"][mask], atol=1e-5)
    np.testing.assert_allclose(maps["eigenvalues"][mask], evals, rtol=1e-5, atol=1e-10)
    # and dipy's own fit of the same data gives the same tensors (noise-free data: WLS is exact)
    bvals, bvecs = read_bvals_bvecs(str(d / "dwi.bval"), str(d / "dwi.bvec"))
    fit = dki.DiffusionKurtosisModel(gradient_table(bvals, bvecs=bvecs)).fit(_load(d / "dwi.nii.gz")[mask])
    np.testing.assert_allclose(fit.lower_triangular()[:, :6], _dipy_lower(D[mask]), rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(fit.kt, kt[mask], rtol=1e-3, atol=1e-4)
    # V1 and colour FA in the b-vector frame (as dtifit and dipy's color_fa)
    v1 = maps["V1"][mask]
    aniso = maps["FA"][mask] > 0.2
    np.testing.assert_allclose(np.abs(np.sum(v1 * fit.evecs[..., 0], axis=1))[aniso], 1.0, atol=1e-5)
    np.testing.assert_allclose(maps["colour_FA"][mask], maps["FA"][mask][:, None] * np.abs(v1), atol=1e-6)


def _dipy_lower(D):
    return np.stack([D[:, 0, 0], D[:, 0, 1], D[:, 1, 1], D[:, 0, 2], D[:, 1, 2], D[:, 2, 2]], axis=1)


def test_predicted_signal_and_residual(fitted):
    d, _ = fitted
    mask = _load(d / "mask.nii.gz") > 0
    data = _load(d / "dwi.nii.gz")[mask]
    pred, res = _load(d / "fit" / "predicted.nii.gz")[mask], _load(d / "fit" / "residual.nii.gz")[mask]
    np.testing.assert_allclose(pred + res, data, rtol=1e-5)
    assert np.max(np.abs(res)) < 1e-3 * np.max(data)  # noise-free data


@pytest.mark.skipif(shutil.which("dwi2tensor") is None or shutil.which("tensor2metric") is None,
                    reason="MRtrix3 not installed")
def test_mrtrix_reads_the_tensors(fitted, tmp_path):
    d, affine = fitted
    mask = _load(d / "mask.nii.gz") > 0

    def mrtrix(*args):
        subprocess.run([*map(str, args), "-quiet", "-force"], check=True, capture_output=True)

    mrtrix("dwi2tensor", "-fslgrad", d / "dwi.bvec", d / "dwi.bval", d / "dwi.nii.gz", tmp_path / "dt.nii.gz",
           "-dkt", tmp_path / "dkt.nii.gz", "-mask", d / "mask.nii.gz")
    for ours, theirs in (("DT", "dt"), ("KT", "dkt")):
        a, b = _load(d / "fit" / f"{ours}.nii.gz")[mask], _load(tmp_path / f"{theirs}.nii.gz")[mask]
        np.testing.assert_allclose(a, b, atol=1e-6 * np.abs(b).max())
    mrtrix("tensor2metric", d / "fit" / "DT.nii.gz", "-fa", tmp_path / "fa.nii.gz", "-adc", tmp_path / "md.nii.gz",
           "-vector", tmp_path / "v1.nii.gz", "-modulate", "none")
    maps = ParameterMaps.load(d / "fit")
    np.testing.assert_allclose(_load(tmp_path / "fa.nii.gz")[mask], maps["FA"][mask], atol=1e-5)
    np.testing.assert_allclose(_load(tmp_path / "md.nii.gz")[mask], maps["MD"][mask], rtol=1e-5)
    # MRtrix's V1 is in world coordinates: ours rotated by the b-vector frame is the same axis
    v1_world = maps["V1"][mask] @ fsl_bvec_frame(affine).T
    aniso = maps["FA"][mask] > 0.2
    dots = np.abs(np.sum(v1_world * _load(tmp_path / "v1.nii.gz")[mask], axis=1))
    np.testing.assert_allclose(dots[aniso], 1.0, atol=1e-4)


def test_plot_fit_of_dki_matches_the_predicted_signal(fitted, tmp_path):
    from qmri.plot import plot_fit

    d, _ = fitted
    ijk = tuple(np.argwhere(_load(d / "mask.nii.gz") > 0)[-1])
    curve = plot_fit(d / "dwi.nii.gz", d / "fit", ijk, tmp_path / "v.png")
    # one point per shell, averaged over its directions (the measured and the predicted signal alike);
    # every volume is kept as a point
    from qmri.models.diffusion.acquisition import powder_average

    bvals, bvecs = np.loadtxt(d / "dwi.bval"), np.loadtxt(d / "dwi.bvec").T
    predicted, shells = powder_average(_load(d / "fit" / "predicted.nii.gz")[ijk], bvals, bvecs)
    measured, _ = powder_average(_load(d / "dwi.nii.gz")[ijk], bvals, bvecs)
    assert len(shells) < len(bvals) and np.all(np.diff(curve["x"]) > 0)
    np.testing.assert_allclose(curve["x"], shells)
    np.testing.assert_allclose(curve["fitted"], predicted, rtol=1e-5)
    np.testing.assert_allclose(curve["measured"], measured, rtol=1e-6)
    np.testing.assert_allclose(curve["points"][1], _load(d / "dwi.nii.gz")[ijk], rtol=1e-6)
