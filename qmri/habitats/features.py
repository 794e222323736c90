"""Features of a subject: parameter maps read onto the ROI's grid, one row per usable ROI voxel.

A map is a NIfTI file, or one map of a qmri output folder (read with
:meth:`qmri.maps.ParameterMaps.load`, which carries its units and geometry). Maps whose grid
(shape or affine) differs from the ROI mask's are resampled onto the mask's grid in scanner
coordinates with nibabel (:func:`nibabel.processing.resample_from_to`): linear interpolation for
maps, nearest neighbour for integer (label) images; no registration. Voxels with a non-finite value
in any feature are dropped and counted. How a map is named and read (:class:`MapSource`,
:func:`read_source`) is :mod:`qmri.mapsources`, shared with ``qmri stats``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qmri.errors import QMRIInputError
from qmri.mapsources import GRID_TOLERANCE_MM, MapSource, parse_map_argument, read_source, same_grid  # noqa: F401


@dataclass
class SubjectFeatures:
    """One subject's features on its ROI.

    Attributes
    ----------
    id : str
    names : list of str
        Feature names, in column order.
    units : list of str
        Unit of each feature.
    values : ndarray (n, F)
        Feature values of the usable ROI voxels (finite in every feature).
    roi : ndarray of bool (X, Y, Z)
        The ROI as given.
    usable : ndarray of bool (X, Y, Z)
        ROI voxels with finite values in every feature (the rows of ``values``, in C order).
    affine : ndarray (4, 4)
        The ROI's voxel-to-world transform (the grid of every output).
    header : nibabel header or None
        The ROI's header.
    resampled : dict of str to str
        Features resampled onto the ROI's grid, with how.
    sources : list of str
        Input files.
    """

    id: str
    names: list
    units: list
    values: np.ndarray
    roi: np.ndarray
    usable: np.ndarray
    affine: np.ndarray
    header: object = None
    resampled: dict = field(default_factory=dict)
    sources: list = field(default_factory=list)

    @property
    def n_dropped(self) -> int:
        """ROI voxels dropped because a feature is not finite there."""
        return int(self.roi.sum() - self.usable.sum())

    @property
    def voxel_mm(self) -> np.ndarray:
        """Voxel size (mm) along the three axes."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in mL (|det| of the affine, mm³ / 1000)."""
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0


# ---------------------------------------------------------------------------------------------
# Grids
# ---------------------------------------------------------------------------------------------
def resample_to_grid(data, affine, shape, target_affine, *, order: int = 1) -> np.ndarray:
    """Resample a 3-D volume onto another grid in scanner coordinates (nibabel, no registration).

    Non-finite voxels do not spread: the volume is interpolated with them set to 0 and divided by
    the interpolated validity (normalised interpolation), so a target voxel takes the mean of the
    finite source voxels around it, and is NaN where less than half of its interpolation weight
    falls on finite voxels or outside the source's field of view. Where every neighbour is finite
    this is plain trilinear (``order=1``) or nearest-neighbour (``order=0``) interpolation.

    Parameters
    ----------
    data : ndarray (x, y, z)
        Source values.
    affine : ndarray (4, 4)
        Source voxel-to-world transform (mm).
    shape : tuple of 3 int
        Target grid shape.
    target_affine : ndarray (4, 4)
        Target voxel-to-world transform (mm).
    order : {0, 1}
        0 for labels (nearest), 1 for maps (linear).

    Returns
    -------
    ndarray (shape), float64
    """
    import nibabel as nib
    from nibabel.processing import resample_from_to

    data = np.asarray(data, dtype=np.float64)
    valid = np.isfinite(data)
    target = (tuple(int(s) for s in shape[:3]), np.asarray(target_affine, dtype=np.float64))

    def warp(vol):
        img = nib.Nifti1Image(vol, np.asarray(affine, dtype=np.float64))
        return np.asarray(resample_from_to(img, target, order=order, mode="constant", cval=0.0).dataobj)

    num = warp(np.where(valid, data, 0.0))
    den = warp(valid.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~(den >= 0.5)] = np.nan
    return out


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
def read_cohort(path) -> tuple[list[str], list[tuple[str, Path, list[MapSource]]]]:
    """Read a cohort table: header ``id,mask,<feature>...``, then one row of paths per subject.

    Relative paths are taken from the table's folder. A cell is a NIfTI file or a qmri output
    folder (the column name is the map read from it).

    Returns
    -------
    names : list of str
        Feature names (columns after ``mask``).
    rows : list of (id, mask path, list of MapSource)

    Raises
    ------
    QMRIInputError
        Missing or unreadable file, a header that is not ``id,mask,<feature>...``, a row with the
        wrong number of cells or an empty cell, a repeated id, no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise QMRIInputError(f"{path}: cohort table not found")
    try:
        with open(path, newline="") as fh:
            table = [row for row in csv.reader(fh) if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise QMRIInputError(f"{path}: cannot read cohort table ({exc})") from None
    if not table:
        raise QMRIInputError(f"{path}: cohort table is empty")
    header = [c.strip() for c in table[0]]
    if len(header) < 3 or header[0].lower() != "id" or header[1].lower() != "mask" or not all(header[2:]):
        raise QMRIInputError(f"{path}: header must be id,mask,<feature>... (e.g. id,mask,D,f,Ktrans), got "
                             f"{','.join(header)}")
    names = header[2:]
    if len(set(names)) != len(names):
        raise QMRIInputError(f"{path}: repeated feature name in the header {','.join(header)}")
    base = path.parent
    rows, seen = [], set()
    for line_no, row in enumerate(table[1:], start=2):
        cells = [c.strip() for c in row]
        if len(cells) != len(header) or not all(cells):
            raise QMRIInputError(f"{path}: line {line_no} has {sum(map(bool, cells))} non-empty cells, the header "
                                 f"{len(header)} ({','.join(row)})")
        sid = cells[0]
        if sid in seen:
            raise QMRIInputError(f"{path}: line {line_no}: subject id {sid!r} repeated")
        if Path(sid).name != sid or sid in (".", ".."):
            raise QMRIInputError(f"{path}: line {line_no}: subject id {sid!r} must be usable as a folder name")
        seen.add(sid)
        rows.append((sid, base / cells[1], [MapSource(n, base / c) for n, c in zip(names, cells[2:])]))
    if not rows:
        raise QMRIInputError(f"{path}: no subject rows under the header")
    return names, rows


def load_roi(path):
    """The ROI mask (bool), its affine and header.

    Raises
    ------
    QMRIInputError
        Missing or unreadable file, not 3-D, empty ROI.
    """
    from qmri import io

    img = io.load_nifti(path, ndim=(3, 4), what="mask")
    if len(img.shape) == 4 and img.shape[3] != 1:
        raise QMRIInputError(f"{path}: mask must be 3-D, got shape {img.shape}")
    roi = np.nan_to_num(io.image_data(img).reshape(img.shape[:3])) != 0
    if not roi.any():
        raise QMRIInputError(f"{path}: ROI is empty (no non-zero voxel)")
    return roi, img.affine, img.header


def map_on_grid(src: MapSource, shape, affine, cache: dict, *, resample: bool = True, mask="the mask"):
    """One map read onto the grid ``shape``/``affine`` (a ROI's): ``(data (shape) float64, unit, how)``,
    ``how`` describing the resampling (empty when the map is on that grid already). Linear
    interpolation (nearest for integer images) in scanner coordinates (:func:`resample_to_grid`).

    Raises
    ------
    QMRIInputError
        Unreadable map; a map on another grid with ``resample=False`` (the message names ``mask``).
    """
    data, src_affine, unit, integer = read_source(src, cache)
    shape = tuple(int(v) for v in shape[:3])
    if same_grid(data.shape, src_affine, shape, affine):
        return np.asarray(data, dtype=np.float64).reshape(shape), unit, ""
    if not resample:
        raise QMRIInputError(f"{src.describe()}: map {src.name} grid (shape {tuple(data.shape[:3])}) differs "
                             f"from the mask {mask} (shape {shape}); drop --no-resample to resample it "
                             "onto the mask's grid")
    order = 0 if integer else 1
    vox = np.sqrt((np.asarray(src_affine)[:3, :3] ** 2).sum(axis=0))
    how = (f"{'nearest' if order == 0 else 'linear'} from grid {list(data.shape[:3])} of "
           f"{' x '.join(f'{v:.3g}' for v in vox)} mm (scanner coordinates, no registration)")
    return resample_to_grid(data, src_affine, shape, affine, order=order), unit, how


def load_subject(subject_id: str, mask, sources, *, resample: bool = True) -> SubjectFeatures:
    """Read one subject's maps onto its ROI's grid.

    Parameters
    ----------
    subject_id : str
    mask : path
        ROI mask NIfTI (non-zero = inside); its grid is the grid of every output.
    sources : list of MapSource
        One per feature, in feature order.
    resample : bool
        Resample maps on another grid onto the mask's (linear; nearest for integer images).
        False: a map on another grid is an error.

    Returns
    -------
    SubjectFeatures

    Raises
    ------
    QMRIInputError
        Missing or unreadable file, empty ROI, a map that is not 3-D, a grid mismatch with
        ``resample=False``, no ROI voxel finite in every feature.
    """
    roi, affine, header = load_roi(mask)
    cols, units, resampled, cache = [], [], {}, {}
    for src in sources:
        data, unit, how = map_on_grid(src, roi.shape, affine, cache, resample=resample, mask=mask)
        if how:
            resampled[src.name] = how
        cols.append(data)
        units.append(unit)
    stack = np.stack([c[roi] for c in cols], axis=1)
    finite = np.all(np.isfinite(stack), axis=1)
    if not finite.any():
        raise QMRIInputError(f"{mask}: no ROI voxel has a finite value in every feature "
                             f"({', '.join(s.name for s in sources)})")
    usable = np.zeros_like(roi)
    usable[roi] = finite
    return SubjectFeatures(id=subject_id, names=[s.name for s in sources], units=units, values=stack[finite],
                           roi=roi, usable=usable, affine=np.asarray(affine, dtype=np.float64), header=header,
                           resampled=resampled, sources=[str(mask)] + [s.describe() for s in sources])


def check_same_features(subjects) -> None:
    """All subjects have the same feature names and units.

    Raises
    ------
    QMRIInputError
        A subject whose names or units differ from the first's.
    """
    ref = subjects[0]
    for s in subjects[1:]:
        if s.names != ref.names or s.units != ref.units:
            raise QMRIInputError(f"subject {s.id}: features {describe_features(s.names, s.units)} differ from "
                                 f"subject {ref.id}'s {describe_features(ref.names, ref.units)}")


def describe_features(names, units) -> str:
    """``D (mm2/s), f, Ktrans (1/min)``."""
    return ", ".join(f"{n} ({u})" if u else n for n, u in zip(names, units))


def from_arrays(subject_id: str, maps: dict, roi, affine=None, units: dict | None = None) -> SubjectFeatures:
    """Features from arrays already on the ROI's grid (Python use, tests, benchmarks).

    Parameters
    ----------
    subject_id : str
    maps : dict of str to ndarray (X, Y, Z)
        Feature maps in feature order.
    roi : ndarray of bool (X, Y, Z)
    affine : ndarray (4, 4), optional
        Voxel-to-world transform (default identity: 1 mm voxels).
    units : dict of str to str, optional

    Raises
    ------
    QMRIInputError
        A map whose shape differs from the ROI's, an empty ROI, no voxel finite in every feature.
    """
    roi = np.asarray(roi, dtype=bool)
    if not roi.any():
        raise QMRIInputError(f"subject {subject_id}: ROI is empty")
    for name, m in maps.items():
        if np.shape(m) != roi.shape:
            raise QMRIInputError(f"subject {subject_id}: map {name} shape {np.shape(m)} differs from the ROI {roi.shape}")
    stack = np.stack([np.asarray(m, dtype=np.float64)[roi] for m in maps.values()], axis=1)
    finite = np.all(np.isfinite(stack), axis=1)
    if not finite.any():
        raise QMRIInputError(f"subject {subject_id}: no ROI voxel has a finite value in every feature")
    usable = np.zeros_like(roi)
    usable[roi] = finite
    units = units or {}
    return SubjectFeatures(id=subject_id, names=list(maps), units=[units.get(k, "") for k in maps],
                           values=stack[finite], roi=roi, usable=usable,
                           affine=np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64))
