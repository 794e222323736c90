"""Maps named on a command line or in a cohort table: a NIfTI file, or one map of a qmri output folder.

A source is read as it is (:func:`read_source`: data, affine, unit from the file's JSON sidecar or the
folder's :meth:`qmri.maps.ParameterMaps.load`); :func:`same_grid` says whether two grids are one.
``qmri stats`` (:mod:`qmri.roistats`) and the habitat features (:mod:`qmri.habitats.features`) read
their maps with these.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qmri.errors import QMRIInputError

#: Affine tolerance (mm) under which two grids are the same.
GRID_TOLERANCE_MM = 1e-3


@dataclass
class MapSource:
    """Where one feature of one subject comes from.

    Attributes
    ----------
    name : str
        Feature name (``D``, ``Ktrans``).
    path : Path
        A NIfTI file, or a qmri output folder holding a map called ``name``.
    """

    name: str
    path: Path

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()

    def describe(self) -> str:
        return f"{self.path}:{self.name}" if self.is_folder else str(self.path)


def same_grid(shape_a, affine_a, shape_b, affine_b) -> bool:
    """Whether two grids have the same shape and affine (within :data:`GRID_TOLERANCE_MM`)."""
    return tuple(shape_a[:3]) == tuple(shape_b[:3]) and np.allclose(affine_a, affine_b, atol=GRID_TOLERANCE_MM)


def parse_map_argument(text: str) -> list[MapSource]:
    """``--maps`` entry → sources: ``FILE.nii.gz`` (feature named by the file stem, e.g. ``D``),
    ``FOLDER:NAME[,NAME...]`` (maps of a qmri output folder) or ``NAME=FILE_OR_FOLDER``.

    Raises
    ------
    QMRIInputError
        A folder without map names, an empty name.
    """
    if "=" in text and not Path(text).exists():
        name, path = text.split("=", 1)
        if not name:
            raise QMRIInputError(f"--maps {text!r}: empty feature name before '='")
        return [MapSource(name, Path(path))]
    if ":" in text and not Path(text).exists():
        folder, names = text.rsplit(":", 1)
        names = [n for n in names.split(",") if n]
        if not names:
            raise QMRIInputError(f"--maps {text!r}: no map names after ':'")
        return [MapSource(n, Path(folder)) for n in names]
    path = Path(text)
    if path.is_dir():
        raise QMRIInputError(f"--maps {text}: a folder needs the maps to use, e.g. {text}:D,f")
    return [MapSource(_stem(path), path)]


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return path.stem


def read_source(src: MapSource, cache: dict):
    """``(data, affine, unit, is_integer)`` of one source (qmri folders read once per call site)."""
    from qmri import io

    if src.is_folder:
        if src.path not in cache:
            from qmri.maps import ParameterMaps

            cache[src.path] = ParameterMaps.load(src.path)
        maps = cache[src.path]
        if src.name not in maps:
            raise QMRIInputError(f"{src.path}: no map {src.name!r} in this qmri output folder "
                                 f"(it has {', '.join(maps.params)})")
        if maps.affine is None:
            raise QMRIInputError(f"{src.path}: maps carry no affine")
        data = np.asarray(maps[src.name])
        return data, maps.affine, maps.units.get(src.name, ""), np.issubdtype(data.dtype, np.integer)
    img = io.load_nifti(src.path, ndim=(3, 4), what=f"map {src.name}")
    if len(img.shape) == 4 and img.shape[3] != 1:
        raise QMRIInputError(f"{src.path}: map {src.name} must be 3-D, got shape {img.shape}")
    unit = ""
    side = io.sidecar_path(src.path)
    if side.is_file():
        try:
            unit = str(io.read_json(side, "JSON sidecar").get("Units", ""))
        except (QMRIInputError, AttributeError):
            unit = ""
    slope = getattr(img.dataobj, "slope", 1.0)
    integer = np.issubdtype(img.get_data_dtype(), np.integer) and slope in (None, 1.0)
    data = io.image_data(img).reshape(img.shape[:3])
    return data, img.affine, unit, bool(integer)
