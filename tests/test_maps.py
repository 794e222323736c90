"""ParameterMaps: geometry carried with the maps, integer quality maps, and save → load round trip."""

import json

import nibabel as nib
import numpy as np
import pytest

from qmri.errors import QMRIInputError
from qmri.maps import ParameterMaps
from qmri.models import IVIM

AFFINE = np.array([[2.0, 0, 0, -10], [0, 2.0, 0, 5], [0, 0, 3.0, 1], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def fitted():
    ph = IVIM.phantom(snr=50.0, block=(3, 3, 2))
    model = IVIM(ph.acquisition["bvals"])
    mask = ph.mask.copy()
    mask[0, 0, 0] = False
    data = ph.data.copy()
    data[1, 1, 0] = 0.0  # an all-zero voxel inside the mask: failed
    maps = model.fit(data, mask=mask, compute_se=True)
    maps.affine = AFFINE
    return maps, mask


def test_status_and_iterations_are_integers_with_minus_one_outside(fitted):
    maps, mask = fitted
    assert maps.status.dtype == np.int8 and maps["n_iter"].dtype == np.int32
    assert np.all(maps.status[~mask] == -1) and np.all(maps["n_iter"][~mask] == -1)
    assert maps.status[1, 1, 0] == 2 and np.isnan(maps["D"][1, 1, 0])
    assert set(np.unique(maps.status[mask])) <= {0, 1, 2}


def test_save_load_round_trip(fitted, tmp_path):
    maps, mask = fitted
    maps.save(tmp_path, prefix="s1_", sources=["dwi.nii.gz"])
    back = ParameterMaps.load(tmp_path, prefix="s1_")
    assert list(back.params) == list(maps.params) and set(back.se) == set(maps.se)
    for name in maps:
        a, b = maps[name], back[name]
        assert b.dtype == (a.dtype if name in ("status", "n_iter") else np.float64), name
        np.testing.assert_allclose(b, a.astype(np.float32) if a.dtype == np.float64 else a, equal_nan=True,
                                   err_msg=name)
    assert back.units == maps.units
    np.testing.assert_array_equal(back.mask, mask)
    np.testing.assert_allclose(back.affine, AFFINE)
    assert back.provenance == json.loads(json.dumps(maps.provenance))
    assert back.converged_fraction == maps.converged_fraction


def test_load_ignores_other_prefixes_and_reports_missing(fitted, tmp_path):
    maps, _ = fitted
    maps.save(tmp_path, prefix="a_")
    maps.save(tmp_path, prefix="b_")
    assert ParameterMaps.load(tmp_path, prefix="b_").provenance["method"] == "lsq"
    with pytest.raises(QMRIInputError, match="no qmri maps with prefix 'c_'"):
        ParameterMaps.load(tmp_path, prefix="c_")
    (tmp_path / "a_f.nii.gz").unlink()
    with pytest.raises(QMRIInputError, match="a_f.nii.gz"):
        ParameterMaps.load(tmp_path, prefix="a_")


def test_header_is_kept(fitted, tmp_path):
    maps, _ = fitted
    hdr = nib.Nifti1Header()
    hdr.set_qform(AFFINE, code=1)
    hdr.set_sform(AFFINE, code=2)
    maps.header = hdr
    maps.save(tmp_path)
    img = nib.load(tmp_path / "D.nii.gz")
    assert int(img.header["sform_code"]) == 2 and int(img.header["qform_code"]) == 1
    np.testing.assert_allclose(img.affine, AFFINE)
    assert ParameterMaps.load(tmp_path).header is not None
