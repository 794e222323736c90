"""Reading a series: ``.nii.gz`` decompressed once by ISA-L into the array, in the stored type and
NIfTI's order, with nibabel's values."""

import nibabel as nib
import numpy as np

from qmri import io


def test_series_gz_is_read_by_isal_with_nibabels_values(tmp_path, monkeypatch):
    from isal import igzip

    rng = np.random.default_rng(0)
    opened = []
    real_open = igzip.open
    monkeypatch.setattr(igzip, "open", lambda *a, **k: opened.append(str(a[0])) or real_open(*a, **k))
    float_data = (rng.random((5, 4, 3, 7)) * 1000).astype(np.float32)
    int_data = rng.integers(0, 3000, (5, 4, 3, 7)).astype(np.int16)
    for name, data, scaling in (("f.nii.gz", float_data, None), ("i.nii.gz", int_data, (2.0, 1.0))):
        img = nib.Nifti1Image(data, np.eye(4))
        if scaling:
            img.header.set_slope_inter(*scaling)
        nib.save(img, tmp_path / name)
        loaded = nib.load(tmp_path / name)
        arr = io.series_data(loaded)
        assert opened[-1] == str(tmp_path / name)
        assert arr.flags.f_contiguous
        np.testing.assert_allclose(arr, np.asanyarray(loaded.dataobj), rtol=1e-7)
        if not scaling:
            assert arr.dtype == np.float32  # the stored type, not float64


def test_uncompressed_series_and_pairs_use_nibabel(tmp_path):
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    for name in ("a.nii", "b.img"):
        nib.save(nib.Nifti1Image(data, np.eye(4)) if name.endswith(".nii") else nib.Nifti1Pair(data, np.eye(4)),
                 tmp_path / name)
        np.testing.assert_array_equal(io.series_data(nib.load(tmp_path / name)), data)
