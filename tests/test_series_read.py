"""Reading a series: ``.nii.gz`` decompressed once by ISA-L, in the stored type and NIfTI's order,
with nibabel's values; large files in pieces; corrupt and truncated files refused in one line."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from qmri import io
from qmri.errors import QMRIInputError


def test_series_gz_is_read_by_isal_with_nibabels_values(tmp_path, monkeypatch):
    from isal import igzip

    rng = np.random.default_rng(0)
    opened = []
    real = igzip.decompress
    monkeypatch.setattr(igzip, "decompress", lambda data: opened.append(len(data)) or real(data))
    float_data = (rng.random((5, 4, 3, 7)) * 1000).astype(np.float32)
    int_data = rng.integers(0, 3000, (5, 4, 3, 7)).astype(np.int16)
    for name, data, scaling in (("f.nii.gz", float_data, None), ("i.nii.gz", int_data, (2.0, 1.0))):
        img = nib.Nifti1Image(data, np.eye(4))
        if scaling:
            img.header.set_slope_inter(*scaling)
        nib.save(img, tmp_path / name)
        loaded = nib.load(tmp_path / name)
        arr = io.series_data(loaded)
        assert opened[-1] == (tmp_path / name).stat().st_size
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


@pytest.mark.parametrize("whole", [True, False])
def test_gzip_pieces_members_and_ratios(tmp_path, monkeypatch, whole):
    """The piecewise path (large files) gives the same bytes as the one-call path, across gzip
    members, with highly compressible data (a piece of input gives far more output) and offsets
    that fall inside a piece."""
    if not whole:
        monkeypatch.setattr(io, "GZIP_WHOLE", 0)
        monkeypatch.setattr(io, "GZIP_READ", 97)
    rng = np.random.default_rng(1)
    content = np.concatenate([np.zeros(20000, np.uint8), rng.integers(0, 255, 5000).astype(np.uint8),
                              np.zeros(30000, np.uint8)]).tobytes()
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(content[:31000]) + gzip.compress(content[31000:]))  # two members
    for offset, nbytes in ((0, len(content)), (352, 24000), (30990, 20)):
        got = io.read_gzip(path, offset, nbytes)
        assert got.tobytes() == content[offset:offset + nbytes]
    with pytest.raises(QMRIInputError, match="truncated"):
        io.read_gzip(path, 100, len(content))
    path.write_bytes(gzip.compress(content)[:-30] + b"garbage" * 5)
    with pytest.raises(QMRIInputError, match=str(path)):
        io.read_gzip(path, 0, len(content))


def test_read_ahead_gives_the_same_data_and_the_same_errors(tmp_path, monkeypatch):
    data = np.arange(5 * 4 * 3 * 6, dtype=np.float32).reshape(5, 4, 3, 6)
    path = tmp_path / "s.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    ahead = io.ReadAhead(path)
    ahead._future.result()  # read ahead done before the reader is replaced
    calls = []
    monkeypatch.setattr(io, "_read_series", lambda img: calls.append(img) or np.zeros(1))
    got = io.series_data(nib.load(path), ahead)  # the read ahead's result: no second read
    np.testing.assert_array_equal(got, data)
    assert calls == [] and ahead._future is None  # handed out once, not kept
    assert io.series_data(nib.load(path), ahead).shape == (1,)  # then read again
    other = tmp_path / "t.nii.gz"
    nib.save(nib.Nifti1Image(data + 1, np.eye(4)), other)
    monkeypatch.undo()
    ahead = io.ReadAhead(path)
    np.testing.assert_array_equal(io.series_data(nib.load(other), ahead), data + 1)  # another file: its own data
    # a file that breaks after its header: the read ahead fails, series_data reads again and reports it
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(QMRIInputError, match="truncated"):
        io.series_data(nib.load(path), io.ReadAhead(path))
    with io.ReadAhead(path) as ahead:
        pass
    assert ahead._future is None
