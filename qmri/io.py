"""Reading and writing: NIfTI (nibabel), FSL bval/bvec (dipy), JSON sidecars; atomic writes.

Every reader raises :class:`qmri.errors.QMRIInputError` with a one-line message that names the
file and the problem. Every writer writes to a temporary file in the target folder and renames
it into place, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import secrets
import sys
import threading
from pathlib import Path

import numpy as np

from qmri.errors import QMRIInputError


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
def load_nifti(path, *, ndim: int | tuple[int, ...] | None = None, what: str = "image"):
    """Load a NIfTI image (lazily; read the data with :func:`image_data`).

    Parameters
    ----------
    path : path
        ``.nii`` or ``.nii.gz`` file.
    ndim : int or tuple of int, optional
        Required number of dimensions (e.g. 4 for a diffusion or DCE series).
    what : str
        What the file is, for error messages ("DWI series", "mask").

    Returns
    -------
    nibabel.Nifti1Image

    Raises
    ------
    QMRIInputError
        Missing or unreadable file, wrong number of dimensions, no voxels, or a file too small for
        the data its header claims (:func:`check_data_size`, before anything is allocated).
    """
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise QMRIInputError(f"{path}: {what} file not found")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise QMRIInputError(f"{path}: cannot read {what} as NIfTI ({type(exc).__name__}: {exc})") from None
    check_data_size(img, what)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if len(img.shape) not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise QMRIInputError(f"{path}: {what} must be {want}, got {len(img.shape)}-D shape {img.shape}")
    return img


def series_data(img, ahead: "ReadAhead | None" = None) -> np.ndarray:
    """Voxel data of an image in its stored type (scaling applied), in NIfTI's (Fortran) order.

    Unlike :func:`image_data`, integer or float32 data are not converted to float64 as a whole:
    :meth:`qmri.models.model.Model.fit` converts one chunk of voxels at a time, so a large series
    costs its own size in memory, not twice it. A ``.nii.gz`` file is decompressed once by ISA-L
    (``isal``, about 1.6x zlib's speed; :func:`read_gzip`) while other threads go on (ISA-L
    releases the interpreter lock, so a fit's kernels load meanwhile); an uncompressed file is
    memory-mapped. The array may be read-only (a view of the decompressed bytes): copy it to
    change it.

    Parameters
    ----------
    img : nibabel image
    ahead : ReadAhead, optional
        A read of the same file started earlier (:class:`ReadAhead`): its result is used when it
        holds the image's data, else the file is read here.

    Raises
    ------
    QMRIInputError
        A file that is corrupt or holds less data than its header says (checked against the file
        size before anything is allocated, :func:`check_data_size`; a ``.nii.gz`` file against
        the length of its decompressed content too).
    """
    data = None if ahead is None else ahead.take(img)
    return data if data is not None else _read_series(img)


def _read_series(img) -> np.ndarray:
    path = img.get_filename()
    check_data_size(img)
    if path is not None and str(path).endswith(".gz") and _is_single_file_nifti(img):
        from nibabel.volumeutils import apply_read_scaling

        proxy = img.dataobj  # where the data lie in the file (the header's copy may say offset 0)
        dtype = np.dtype(proxy.dtype)
        count = math.prod(proxy.shape)
        raw = read_gzip(path, int(proxy.offset), count * dtype.itemsize)
        arr = raw.view(dtype).reshape(proxy.shape, order="F")
        return apply_read_scaling(arr, proxy.slope, proxy.inter)
    try:
        return np.asanyarray(img.dataobj)
    except (OSError, EOFError, ValueError, MemoryError) as exc:  # nibabel's reports of damaged files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise QMRIInputError(f"{path}: cannot read the image data ({first})") from None


#: The largest ratio of decompressed to compressed size that deflate (RFC 1951) can reach: a
#: 258-byte match costs at least 2 bits, so about 1032:1 (zlib's "technical details" page). A
#: header asking for more data than this times the file's size cannot be true.
GZIP_MAX_RATIO = 1032


def check_data_size(img, what: str = "image") -> None:
    """Check, from the file sizes alone, that an image's file can hold the data its header claims.

    Nothing is allocated or decompressed: an uncompressed data file must have at least the
    header's offset plus ``prod(shape) * itemsize`` bytes; a gzip-compressed one cannot hold
    more than :data:`GZIP_MAX_RATIO` times its size (the exact length is checked when it is
    read, by :func:`read_gzip`). An image without voxels (a dimension of 0) or whose data are
    not real numbers (RGB, complex) is refused too.

    Raises
    ------
    QMRIInputError
        One line naming the file: no voxels, data not real numbers, or fewer bytes than the header
        asks for.
    """
    shape = tuple(int(n) for n in img.shape)
    header_file = img.get_filename()
    if any(n < 1 for n in shape):
        raise QMRIInputError(f"{header_file}: {what} has no voxels (shape {shape})")
    dtype = np.dtype(img.get_data_dtype())
    if dtype.kind not in "biuf":  # RGB, complex, ...: no one real value per voxel
        raise QMRIInputError(f"{header_file}: {what} data type {dtype} is not real numbers (one value per voxel)")
    holder = getattr(img, "file_map", {}).get("image")
    path = getattr(holder, "filename", None)
    proxy = img.dataobj
    if path is None or not hasattr(proxy, "offset") or not os.path.isfile(path):
        return
    need = int(proxy.offset) + math.prod(shape) * np.dtype(proxy.dtype).itemsize
    size = os.path.getsize(path)
    if str(path).endswith((".gz", ".bz2", ".zst")):
        if need > GZIP_MAX_RATIO * size:
            raise QMRIInputError(f"{path}: the header asks for {need} bytes of data (shape {shape}), more than a "
                                 f"compressed file of {size} bytes can hold (damaged or wrong header?)")
    elif size < need:
        raise QMRIInputError(f"{path}: {what} file has {size} bytes, the header asks for {need} (shape {shape}; "
                             f"truncated file or wrong header?)")


class ReadAhead:
    """A ``.nii.gz`` series read in a background thread while its owner does other work (checking the
    inputs, building the model, loading compiled kernels: decompression releases the interpreter
    lock), handed to :func:`series_data` of an image of that file.

    The fit of a file (:func:`qmri.workflows.job.fit_files`) owns one for its series and closes it
    when done. Nothing is read for other files. Any error is left to :func:`series_data`, which
    then reads the file itself and reports it, as without the read ahead.

    Parameters
    ----------
    path : path
        The series file.
    """

    def __init__(self, path):
        from concurrent.futures import Future

        self.path = Path(path)
        self._future: Future | None = None
        if not str(path).endswith(".gz") or not self.path.is_file():
            return
        self._future = Future()
        future = self._future

        def read():
            try:
                import nibabel as nib

                future.set_result(_read_series(nib.load(str(path))))
            except BaseException as exc:  # noqa: BLE001 - series_data reads again and reports
                future.set_exception(exc)

        threading.Thread(target=read, daemon=True, name="qmri-read-ahead").start()

    def take(self, img) -> np.ndarray | None:
        """The data read ahead, if ``img`` is an image of this file and the read succeeded (waiting
        for it), else None; handed out once (the reader keeps no reference to it afterwards)."""
        future, path = self._future, img.get_filename()
        if future is None or path is None or Path(path).resolve() != self.path.resolve():
            return None
        self._future = None
        try:
            data = future.result()
        except Exception:  # noqa: BLE001 - the caller reads again, which reports the problem
            return None
        return data if data.shape == img.shape else None

    def close(self) -> None:
        """Forget the read (its memory is freed when the thread ends)."""
        self._future = None

    def __enter__(self) -> "ReadAhead":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: Files up to this size (compressed bytes) are decompressed in one call by :func:`read_gzip`.
GZIP_WHOLE = 1 << 30
#: Larger files are decompressed in pieces of this many compressed bytes.
GZIP_READ = 1 << 23


def read_gzip(path, offset: int, nbytes: int) -> np.ndarray:
    """Bytes ``offset`` to ``offset + nbytes`` of the decompressed content of a gzip file.

    Decompressed by ISA-L (``isal``), which releases the interpreter lock while it works. A file
    of up to :data:`GZIP_WHOLE` bytes is decompressed in one call (the fastest way measured;
    memory: the compressed file plus its content, for the time of the call); a larger one in pieces of at most :data:`GZIP_READ`
    compressed bytes and as many decompressed ones (memory: the result plus a few pieces, whatever
    the compression ratio). Concatenated gzip members are read one after the other.

    Returns
    -------
    ndarray of uint8, shape (nbytes,)
        Read-only when the file was decompressed in one call (a view of the decompressed bytes).

    Raises
    ------
    QMRIInputError
        Corrupt data, or fewer than ``offset + nbytes`` decompressed bytes.
    """
    from isal import igzip, isal_zlib

    if os.path.getsize(path) <= GZIP_WHOLE:
        with open(path, "rb") as f:
            packed = f.read()
        try:
            content = igzip.decompress(packed)
        except (isal_zlib.error, EOFError, OSError) as exc:
            raise QMRIInputError(f"{path}: corrupt gzip data ({exc})") from None
        del packed
        if len(content) < offset + nbytes:
            raise QMRIInputError(f"{path}: file ends after {len(content)} bytes of data, the header asks for "
                                 f"{int(offset) + nbytes} (truncated file?)")
        return np.frombuffer(content, np.uint8, nbytes, int(offset))
    if offset + nbytes > GZIP_MAX_RATIO * os.path.getsize(path):
        raise QMRIInputError(f"{path}: the header asks for {int(offset) + nbytes} bytes of data, more than a "
                             f"compressed file of {os.path.getsize(path)} bytes can hold (damaged or wrong header?)")
    try:
        out = np.empty(nbytes, dtype=np.uint8)
    except MemoryError:
        raise QMRIInputError(f"{path}: not enough memory for the {nbytes} bytes of data the header asks for") from None
    pos = -int(offset)  # position in ``out`` of the next decompressed byte
    with open(path, "rb") as f:
        d = isal_zlib.decompressobj(wbits=31)
        data = f.read(GZIP_READ)
        try:
            while pos < nbytes and data:
                piece = d.decompress(data, GZIP_READ)
                if piece:
                    lo = max(0, -pos)
                    if lo < len(piece):
                        k = min(len(piece) - lo, nbytes - pos - lo)
                        out[pos + lo:pos + lo + k] = np.frombuffer(piece, np.uint8, k, lo)
                    pos += len(piece)
                if d.unconsumed_tail:
                    data = d.unconsumed_tail
                elif d.eof:
                    data = d.unused_data or f.read(GZIP_READ)
                    if data:
                        d = isal_zlib.decompressobj(wbits=31)  # next gzip member
                else:
                    data = f.read(GZIP_READ)
        except isal_zlib.error as exc:
            raise QMRIInputError(f"{path}: corrupt gzip data ({exc})") from None
    if pos < nbytes:
        raise QMRIInputError(f"{path}: file ends after {max(pos, 0) + int(offset)} bytes of data, the header "
                             f"asks for {int(offset) + nbytes} (truncated file?)")
    return out


def _is_single_file_nifti(img) -> bool:
    """A ``.nii`` image (header and data in one file), not a ``.hdr``/``.img`` pair. (``Nifti1Image``
    is a subclass of ``Nifti1Pair``, so the type alone cannot tell them apart.)"""
    import nibabel as nib

    return isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)) and str(img.get_filename()).endswith((".nii", ".nii.gz"))


def image_data(img) -> np.ndarray:
    """Voxel data of a nibabel image as float64 (scaling applied)."""
    return np.asarray(series_data(img), dtype=np.float64)


def _dipy_read_bvals_bvecs():
    """dipy's FSL gradient reader, :func:`dipy.io.gradients.read_bvals_bvecs`.

    ``import dipy.io`` runs the package's ``__init__``, which imports its streamline and
    pickle readers (and through them pandas and pytest): about 0.6 s on a 2-core machine
    for a reader that needs only NumPy. The module ``dipy/io/gradients.py`` imports only
    the standard library and NumPy, so it is loaded here on its own, under its own name,
    unless ``dipy.io`` is imported already.
    """
    done = sys.modules.get("dipy.io.gradients") or sys.modules.get("qmri._dipy_gradients")
    if done is not None:
        return done.read_bvals_bvecs

    dipy = importlib.util.find_spec("dipy")
    path = Path(dipy.submodule_search_locations[0]) / "io" / "gradients.py"
    spec = importlib.util.spec_from_file_location("qmri._dipy_gradients", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["qmri._dipy_gradients"] = module
    return module.read_bvals_bvecs


def read_bvals(path) -> np.ndarray:
    """Read an FSL ``.bval`` file (b-values in s/mm², one row or one column).

    Uses dipy's reader, :func:`dipy.io.gradients.read_bvals_bvecs`.

    Raises
    ------
    QMRIInputError
        Missing file, non-numeric or non-finite content, negative b-values, empty file.
    """
    read_bvals_bvecs = _dipy_read_bvals_bvecs()
    path = Path(path)
    if not path.exists():
        raise QMRIInputError(f"{path}: b-value file not found")
    try:
        bvals, _ = read_bvals_bvecs(str(path), None)
    except Exception as exc:
        raise QMRIInputError(f"{path}: cannot read b-values ({exc})") from None
    bvals = np.asarray(bvals, dtype=np.float64).ravel()
    if bvals.size == 0:
        raise QMRIInputError(f"{path}: no b-values in file")
    if not np.all(np.isfinite(bvals)):
        raise QMRIInputError(f"{path}: b-values must be finite numbers")
    if np.any(bvals < 0):
        raise QMRIInputError(f"{path}: negative b-value {bvals[bvals < 0][0]:g} (b must be >= 0 s/mm2)")
    return bvals


def read_bvecs(path, n: int | None = None) -> np.ndarray:
    """Read an FSL ``.bvec`` file (3×N or N×3) as an (N, 3) array.

    Parameters
    ----------
    path : path
    n : int, optional
        Expected number of directions.

    Raises
    ------
    QMRIInputError
        Missing file, unreadable content, wrong shape or count.
    """
    read_bvals_bvecs = _dipy_read_bvals_bvecs()
    path = Path(path)
    if not path.exists():
        raise QMRIInputError(f"{path}: b-vector file not found")
    try:
        _, bvecs = read_bvals_bvecs(None, str(path))
    except Exception as exc:
        raise QMRIInputError(f"{path}: cannot read b-vectors ({exc})") from None
    bvecs = np.asarray(bvecs, dtype=np.float64)
    if bvecs.ndim != 2 or bvecs.shape[1] != 3 or not np.all(np.isfinite(bvecs)):
        raise QMRIInputError(f"{path}: b-vectors must be 3 rows (or columns) of finite numbers")
    if n is not None and bvecs.shape[0] != n:
        raise QMRIInputError(f"{path}: {bvecs.shape[0]} b-vectors but {n} volumes")
    return bvecs


def read_frame_times(path) -> np.ndarray:
    """Frame times (s) from a text file: numbers separated by white space, commas or new lines.

    Raises
    ------
    QMRIInputError
        Missing file, non-numeric content, no values, non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise QMRIInputError(f"{path}: time file not found")
    try:
        t = np.array(path.read_text().replace(",", " ").split(), dtype=np.float64)
    except ValueError as exc:
        raise QMRIInputError(f"{path}: cannot read frame times ({exc})") from None
    if t.size == 0:
        raise QMRIInputError(f"{path}: no frame times in file")
    if not np.all(np.isfinite(t)):
        raise QMRIInputError(f"{path}: frame times must be finite numbers (s)")
    return t


#: JSON and TOML inputs nested deeper than this are refused: sidecars, models and configurations
#: are a few levels deep, and deeper nesting only exhausts the recursion of the parsers and of the
#: code that walks or copies what they return.
MAX_NESTING = 64


def read_json(path, what: str = "JSON file"):
    """Parse a JSON file (UTF-8): sidecars, habitat models, anything a user gives.

    Parameters
    ----------
    path : path
    what : str
        What the file is, for error messages ("JSON sidecar", "habitat model").

    Returns
    -------
    The parsed value (any JSON type: callers check the type they need).

    Raises
    ------
    QMRIInputError
        Missing or unreadable file, not UTF-8, not JSON, nested deeper than :data:`MAX_NESTING`
        levels (one line naming the file).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QMRIInputError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise QMRIInputError(f"{path}: cannot read {what} ({exc})") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise QMRIInputError(f"{path}: {what} nested deeper than {MAX_NESTING} levels") from None
    except ValueError as exc:
        raise QMRIInputError(f"{path}: {what} is not valid JSON ({exc})") from None
    check_nesting(data, path, what)
    return data


def check_nesting(data, path, what: str = "file") -> None:
    """Refuse parsed JSON/TOML nested deeper than :data:`MAX_NESTING` levels (walked without recursion).

    Raises
    ------
    QMRIInputError
        ``<path>: <what> nested deeper than 64 levels``.
    """
    level = [data]
    for _ in range(MAX_NESTING):
        level = [v for c in level if isinstance(c, (dict, list))
                 for v in (c.values() if isinstance(c, dict) else c) if isinstance(v, (dict, list))]
        if not level:
            return
    raise QMRIInputError(f"{path}: {what} nested deeper than {MAX_NESTING} levels")


def load_mask(path, reference_img, *, reference_path=None) -> np.ndarray:
    """Load a mask and check it lies on the reference image's grid.

    Parameters
    ----------
    path : path
        Mask NIfTI (non-zero = inside), 3-D (or 4-D with a last axis of 1).
    reference_img : nibabel image
        The data the mask belongs to (its first three axes and affine must match).

    Returns
    -------
    ndarray of bool, shape reference_img.shape[:3]

    Raises
    ------
    QMRIInputError
        Missing/unreadable file, shape or affine different from the data, empty mask.
    """
    mask = load_on_grid(path, reference_img, what="mask", reference_path=reference_path)
    mask = np.nan_to_num(mask) != 0
    if not mask.any():
        raise QMRIInputError(f"{path}: mask is empty")
    return mask


def load_on_grid(path, reference_img, *, what="map", reference_path=None) -> np.ndarray:
    """Load a 3-D image (mask, B1 map, T1 map, ...) that must lie on the reference image's grid.

    Parameters
    ----------
    path : path
        NIfTI file, 3-D (or 4-D with a last axis of 1).
    reference_img : nibabel image
        The data it belongs to (its first three axes and affine must match).
    what : str
        Name used in error messages (``"mask"``, ``"B1 map"``...).
    reference_path : path, optional
        Named in error messages.

    Returns
    -------
    ndarray, shape reference_img.shape[:3] (the file's values, float or integer)

    Raises
    ------
    QMRIInputError
        Missing/unreadable file, shape or affine (tolerance 1e-3 mm) different from the data.
    """
    img = load_nifti(path, what=what)
    shape = tuple(img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    ref_shape = tuple(reference_img.shape[:3])
    ref = f" of {reference_path}" if reference_path else ""
    if shape != ref_shape:
        raise QMRIInputError(f"{path}: {what} shape {shape} differs from the data{ref} {ref_shape}")
    if not np.allclose(img.affine, reference_img.affine, atol=1e-3):
        raise QMRIInputError(f"{path}: {what} affine differs from the data{ref} (not on the same grid)")
    return series_data(img).reshape(shape)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def sidecar_path(nifti_path) -> Path:
    """``x.nii.gz`` → ``x.json``."""
    p = Path(nifti_path)
    name = p.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return p.with_name(name[: -len(ext)] + ".json")
    return p.with_suffix(".json")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` (same extension); rename it into place on success.

    The temporary file is created as ``open()`` creates files (mode 0666 less the umask), so the
    result is as readable as any other file the user writes. On any exception the temporary file
    is removed and ``path`` is untouched; an ``OSError`` of the write that names no file (a full
    disk, say) is raised again naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    while True:
        tmp = path.parent / f".{path.stem}.{secrets.token_hex(6)}.tmp{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            # a failed write (disk full...) names no file: name the one being written
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


#: gzip level of written ``.nii.gz`` maps: 1, the fastest (nibabel's default too). On parameter
#: maps level 6 saves a few percent of size at several times the time (ISA-L levels 0–3).
COMPRESS_LEVEL = 1


def write_map(path, data, *, affine=None, header=None, intent: str = "", dtype=np.float32):
    """Write one map as NIfTI (float32 by default), atomically.

    The input affine and header (orientation codes, voxel sizes) are kept; the data type becomes
    ``dtype`` and any intensity scaling of the input is reset.

    Parameters
    ----------
    path : path
        ``.nii.gz`` or ``.nii`` target.
    data : ndarray
        Map values (NaN allowed).
    affine : ndarray (4, 4), optional
    header : nibabel header, optional
    intent : str
        Stored (truncated to 16 ASCII characters) as the NIfTI intent name.
    dtype : numpy dtype
        Data type on disk (float32; int8 / int32 for integer maps). A float32 map whose finite
        values lie beyond float32's range (about 3.4e38: a series on such a scale gives an S0
        map of that scale) is written as float64, so that no value becomes infinite.
    """
    import nibabel as nib

    data = np.asarray(data)
    with np.errstate(over="ignore"):
        arr = np.asarray(data, dtype=dtype)
    if arr.dtype == np.float32 and data.dtype.kind == "f" and np.any(np.isinf(arr) & np.isfinite(data)):
        arr, dtype = np.asarray(data, dtype=np.float64), np.float64  # finite values beyond float32: keep them
    if affine is None:
        affine = np.eye(4) if header is None else header.get_best_affine()
    hdr = header.copy() if header is not None else None
    img = nib.Nifti1Image(arr, affine, header=hdr)
    img.header.set_data_dtype(dtype)
    img.header.set_slope_inter(1.0, 0.0)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_intent("none", name=intent.encode("ascii", "replace").decode()[:16])
    with atomic_path(path) as tmp:
        if str(path).endswith(".nii.gz"):
            from isal import igzip  # ISA-L's gzip: ~10x zlib's speed at level 1, about the same size

            with igzip.open(tmp, "wb", compresslevel=COMPRESS_LEVEL) as f:
                f.write(img.to_bytes())
        else:
            nib.save(img, str(tmp))


def json_text(obj) -> str:
    """``obj`` as JSON text (indent 2; NumPy values and paths converted, NaN written as null)."""
    return json.dumps(_jsonable(obj), indent=2)


def write_json(path, obj):
    """Write a JSON file atomically (as :func:`json_text`)."""
    text = json_text(obj)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def write_text(path, text: str):
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        if all(type(v) is float for v in obj):  # long sample lists (an AIF): no call per value
            return [v if math.isfinite(v) else None for v in obj]
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj
