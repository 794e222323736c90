"""BIDS and dcm2niix conventions: the files beside a series, what its sidecars say, the BIDS schema.

Inputs
------
dcm2niix writes ``X.nii.gz`` with ``X.json`` (the acquisition, BIDS keys) and, for diffusion,
``X.bval`` / ``X.bvec`` beside it; a BIDS dataset holds the same files, and may place metadata
higher up in the tree (the inheritance principle: ``sub-01/dwi/sub-01_dwi.nii.gz`` also reads
``dwi.json`` or ``sub-01_dwi.json`` at the dataset root). :func:`companions` finds them;
:class:`Sidecar` reads the keys the workflows use (``FlipAngle`` in degrees,
``RepetitionTimeExcitation`` / ``RepetitionTime`` in s, frame timing); :func:`reconcile` decides
between a value given on the command line and the sidecar's: either alone is used, both must agree
(within :data:`AGREEMENT_RTOL`) or the run stops naming both.

Schema and derivative datasets
------------------------------
The BIDS schema (``bidsschematools``) supplies the entities, their order and their value formats
(:func:`schema_entities`, imported only when BIDS names are built or checked);
:func:`write_dataset_description` writes a derivative dataset's description. How the maps of a
fit are named (qmri's own names or BIDS derivative names) is :mod:`qmri.naming`.

Sources: BIDS specification 1.11 (common principles: inheritance, BIDS URIs; qMRI maps;
derivatives), BEP016 (diffusion derivatives, proposed: ``model-``/``param-`` entities, ``dwimap``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from qmri import __version__
from qmri.errors import QMRIInputError
from qmri.options import Option

log = logging.getLogger(__name__)

#: Extensions of an image, longest first.
IMAGE_EXTENSIONS = (".nii.gz", ".nii")
#: Relative tolerance within which a command-line value agrees with the sidecar's.
AGREEMENT_RTOL = 0.01
#: A ``RepetitionTime`` at or above this (s) in the sidecar of a DCE series is its frame interval;
#: below it, and without ``RepetitionTimeExcitation``, it is the excitation TR of a 3-D gradient echo
#: (as dcm2niix writes it for such series), never a frame interval.
MIN_FRAME_INTERVAL = 0.5


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------
def split_image_name(path) -> tuple[str, str]:
    """``sub-01_dwi.nii.gz`` → ``("sub-01_dwi", ".nii.gz")`` (any other name: its suffix split off)."""
    name = Path(path).name
    for ext in IMAGE_EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)], ext
    p = Path(name)
    return p.stem, p.suffix


def parse_name(stem: str) -> tuple[dict[str, str], str]:
    """Entities and suffix of a BIDS file name stem: ``sub-01_ses-1_dwi`` → ``({"sub": "01", "ses": "1"},
    "dwi")``. A stem that is not ``key-value`` pairs followed by a suffix gives ``({}, "")``."""
    parts = stem.split("_")
    entities = {}
    for part in parts[:-1]:
        key, sep, value = part.partition("-")
        if not sep or not key or not value:
            return {}, ""
        entities[key] = value
    suffix = parts[-1]
    if "-" in suffix or not suffix:
        return {}, ""
    return entities, suffix


def dataset_root(path) -> Path | None:
    """The nearest folder above ``path`` holding a ``dataset_description.json`` (a BIDS dataset), or None."""
    for folder in Path(path).resolve().parents:
        if (folder / "dataset_description.json").is_file():
            return folder
    return None


def dataset_type(root) -> str:
    """``DatasetType`` of the dataset at ``root`` (``raw`` when absent or unreadable)."""
    from qmri import io

    try:
        return str(io.read_json(Path(root) / "dataset_description.json").get("DatasetType", "raw"))
    except (QMRIInputError, AttributeError):
        return "raw"


def _inherited(series: Path, ext: str, root: Path | None) -> list[Path]:
    """Files with extension ``ext`` that apply to ``series``, the most specific last: the one
    beside it (same stem) and, inside a BIDS dataset, those higher up whose entities are a subset
    of the series' with the same suffix (the inheritance principle)."""
    stem, _ = split_image_name(series)
    beside = series.with_name(stem + ext)
    if root is None:
        return [beside] if beside.is_file() else []
    entities, suffix = parse_name(stem)
    if not suffix:
        return [beside] if beside.is_file() else []
    found = []
    folder = series.resolve().parent
    levels = [folder] + [p for p in folder.parents if root in p.parents or p == root]
    for level in levels:
        here = []
        for cand in level.glob(f"*{suffix}{ext}"):
            c_ent, c_suffix = parse_name(cand.name[: -len(ext)])
            if c_suffix == suffix and all(entities.get(k) == v for k, v in c_ent.items()):
                here.append((len(c_ent), cand))
        found += [c for _, c in sorted(here, key=lambda t: -t[0])]
        if level == root:
            break
    return list(reversed(found))


@dataclass
class Companions:
    """The files that go with a series: its sidecars (least specific first), ``.bval`` and ``.bvec``.

    Attributes
    ----------
    series : Path
    sidecars : list of Path
        JSON files whose keys apply to the series, least specific first (the last wins).
    bval, bvec : Path or None
        The b-value and b-vector files beside it (or inherited, in a BIDS dataset).
    root : Path or None
        The BIDS dataset the series is in.
    """

    series: Path
    sidecars: list = field(default_factory=list)
    bval: Path | None = None
    bvec: Path | None = None
    root: Path | None = None

    def sidecar(self) -> "Sidecar":
        """The merged metadata of :attr:`sidecars`."""
        from qmri import io

        meta, sources = {}, {}
        for path in self.sidecars:
            data = io.read_json(path, "JSON sidecar")
            if isinstance(data, dict):
                meta.update(data)
                sources.update({k: Path(path) for k in data})
        return Sidecar(meta, sources)


def companions(series, *, use: bool = True) -> Companions:
    """The sidecars, ``.bval`` and ``.bvec`` of the image ``series`` (nothing when ``use`` is False).

    Beside-files are found without reading anything but file names; the inheritance principle is
    applied only inside a BIDS dataset (a ``dataset_description.json`` above the series).
    """
    series = Path(series)
    if not use:
        return Companions(series)
    root = dataset_root(series)
    bval = _inherited(series, ".bval", root)
    bvec = _inherited(series, ".bvec", root)
    return Companions(series, _inherited(series, ".json", root), bval[-1] if bval else None,
                      bvec[-1] if bvec else None, root)


# ---------------------------------------------------------------------------------------------
# Sidecar keys
# ---------------------------------------------------------------------------------------------
@dataclass
class Sidecar:
    """Metadata of a series (BIDS keys) and the file each key came from."""

    meta: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)

    def where(self, key: str) -> str:
        """``"FlipAngle in X.json"``: a key and its file, for messages."""
        return f"{key} in {self.sources.get(key, 'the sidecar')}"

    def number(self, key: str, *, positive: bool = True):
        """The float (or list of floats) of ``key``, None when absent.

        Raises
        ------
        QMRIInputError
            Present but not a finite (positive) number or list of them.
        """
        if key not in self.meta or self.meta[key] is None:
            return None
        value = self.meta[key]
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise QMRIInputError(f"{self.where(key)}: expected a number, got {value!r}") from None
        if arr.ndim > 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or (positive and np.any(arr <= 0)):
            raise QMRIInputError(f"{self.where(key)}: expected {'positive ' if positive else ''}finite number(s), "
                                 f"got {value!r}")
        return float(arr) if arr.ndim == 0 else arr

    def flip_angle(self):
        """``FlipAngle`` (degrees): a float, or one per volume; None when absent."""
        return self.number("FlipAngle")

    def excitation_tr(self, *, frame_interval_possible: bool = False):
        """The excitation repetition time (s): ``RepetitionTimeExcitation``, else ``RepetitionTime``
        unless that is the frame interval of a dynamic series (``frame_interval_possible`` and at
        least :data:`MIN_FRAME_INTERVAL`). Returns ``(value, key)`` or ``(None, None)``."""
        rte = self.number("RepetitionTimeExcitation")
        if rte is not None:
            return rte, "RepetitionTimeExcitation"
        rt = self.number("RepetitionTime")
        if rt is None or (frame_interval_possible and np.max(rt) >= MIN_FRAME_INTERVAL):
            return None, None
        return rt, "RepetitionTime"

    def frame_times(self, n_frames: int):
        """Frame start times (s, first frame at 0 unless the sidecar says otherwise) of a dynamic series.

        From, in order: ``FrameTimesStart`` (PET-BIDS) or ``VolumeTiming`` (BIDS), lists of s;
        ``AcquisitionTime`` as a list of clock times (``HH:MM:SS.ffffff``, one per frame; relative to
        the first); ``RepetitionTime`` as the frame interval when it is the volume TR (with
        ``RepetitionTimeExcitation`` beside it, or at least :data:`MIN_FRAME_INTERVAL`).
        Returns ``(times, key)`` or ``(None, None)``.

        Raises
        ------
        QMRIInputError
            A list whose length is not ``n_frames``, unreadable clock times.
        """
        for key in ("FrameTimesStart", "VolumeTiming"):
            t = self.number(key, positive=False)
            if t is not None:
                return self._check_count(np.atleast_1d(t), n_frames, key), key
        acq = self.meta.get("AcquisitionTime")
        if isinstance(acq, list) and len(acq) > 1:
            t = np.array([_clock_seconds(v, self.where("AcquisitionTime")) for v in acq])
            t = np.where(t < t[0], t + 86400.0, t) - t[0]  # past midnight
            return self._check_count(t, n_frames, "AcquisitionTime"), "AcquisitionTime"
        rt = self.number("RepetitionTime")
        volume_tr = rt is not None and np.ndim(rt) == 0 and ("RepetitionTimeExcitation" in self.meta
                                                            or rt >= MIN_FRAME_INTERVAL)
        if volume_tr:
            return np.arange(n_frames) * float(rt), "RepetitionTime"
        return None, None

    def _check_count(self, t, n, key):
        if t.size != n:
            raise QMRIInputError(f"{self.where(key)}: {t.size} frame times but the series has {n} frames")
        return t


def _clock_seconds(text, where) -> float:
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2}):(\d{2}(?:\.\d*)?)\s*", str(text))
    if not m:
        raise QMRIInputError(f"{where}: cannot read clock time {text!r} (expected HH:MM:SS.ffffff)")
    h, mnt, s = m.groups()
    return int(h) * 3600.0 + int(mnt) * 60.0 + float(s)


def _text(value) -> str:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    return ",".join(f"{v:g}" for v in arr)


def reconcile(given, found, *, flag: str, where: str, what: str):
    """The value to use when the command line gives ``given`` and a sidecar ``found`` (either may be None).

    Either alone is used (the sidecar's is reported through :mod:`logging`); both must agree
    within :data:`AGREEMENT_RTOL` (element-wise for lists; a single value agrees with a list of
    equal values), and then the command line's is used.

    Parameters
    ----------
    flag : str
        The command-line flag (``--fa``).
    where : str
        The key and its file (:meth:`Sidecar.where`).
    what : str
        What the value is, for the log (``flip angle (deg)``).

    Raises
    ------
    QMRIInputError
        ``given`` contradicts ``found`` (the message names both).
    """
    if found is None:
        return given
    if given is None:
        log.info("%s %s from %s", what, _text(found), where)
        return found
    a = np.atleast_1d(np.asarray(given, dtype=np.float64))
    b = np.atleast_1d(np.asarray(found, dtype=np.float64))
    if a.size != b.size and 1 not in (a.size, b.size):
        raise QMRIInputError(f"{flag} {_text(given)} contradicts {where} ({_text(found)}): {a.size} value(s) "
                             f"against {b.size}")
    if not np.allclose(a, b, rtol=AGREEMENT_RTOL, atol=0.0):
        raise QMRIInputError(f"{flag} {_text(given)} contradicts {where} ({_text(found)}); give the right value "
                             "or none (or --ignore-sidecar)")
    return given


def take_file(given, found, *, flag: str, what: str):
    """A file given on the command line (``given``) or found beside the series (``found``); the
    command line wins. A file found and used is reported through :mod:`logging` (info), one given
    in place of another found beside the series at debug level."""
    if given is not None:
        if found is not None and Path(found).resolve() != Path(given).resolve():
            log.debug("%s from %s (%s given; %s beside the series not used)", what, given, flag, found)
        return given
    if found is not None:
        log.info("%s from %s (beside the series)", what, found)
    return found


def ignore_sidecar_option():
    """``--ignore-sidecar``: the workflows' switch to read nothing beside the series."""
    return Option("ignore_sidecar", "read nothing beside the series (X.json, X.bval, X.bvec for X.nii.gz); by "
                  "default they supply what no flag gives", bool, False)


# ---------------------------------------------------------------------------------------------
# The BIDS schema, and derivative datasets
# ---------------------------------------------------------------------------------------------
#: Entities proposed by BEP016 (diffusion derivatives) for the maps of a model fit, not yet in the
#: schema; placed before ``desc`` (as ``..._model-<label>_param-<label>[_desc-<label>]_dwimap``).
PROPOSED_ENTITIES = ("model", "param")


@lru_cache(maxsize=1)
def schema_entities() -> tuple[tuple[str, ...], dict]:
    """The BIDS schema's entities (``bidsschematools``): their short names in the schema's order,
    with :data:`PROPOSED_ENTITIES` inserted before ``desc``, and the value pattern of each."""
    from bidsschematools import schema

    s = schema.load_schema()
    order, patterns = [], {}
    for long_name in s.rules.entities:
        ent = s.objects.entities[long_name]
        order.append(ent.name)
        patterns[ent.name] = s.objects.formats[ent.format].pattern
    i = order.index("desc")
    order[i:i] = list(PROPOSED_ENTITIES)
    patterns.update({k: s.objects.formats["label"].pattern for k in PROPOSED_ENTITIES})
    return tuple(order), patterns


@lru_cache(maxsize=1)
def ratified_map_suffixes() -> frozenset:
    """Suffixes of the BIDS qMRI parametric maps (``T1map``, ``M0map``...) in the schema."""
    from bidsschematools import schema

    return frozenset(schema.load_schema().rules.files.raw.anat.parametric.suffixes)


def bids_version() -> str:
    from bidsschematools import schema

    return str(schema.load_schema().bids_version)


def dataset_description(links: dict | None = None) -> dict:
    """``dataset_description.json`` of a qmri derivative dataset (BIDS derivatives)."""
    out = {"Name": "qmri parameter maps", "BIDSVersion": bids_version(), "DatasetType": "derivative",
           "GeneratedBy": [{"Name": "qmri", "Version": __version__,
                            "Description": "voxel-wise quantitative MRI model fits (IVIM, DKI, T1, DCE)"}]}
    if links:
        out["DatasetLinks"] = dict(links)
    return out


def write_dataset_description(out_dir, links: dict | None = None) -> Path | None:
    """Write ``out_dir/dataset_description.json`` unless it exists (then it is left as it is; one
    that is not a derivative dataset's is reported). Returns the path written, or None."""
    from qmri import io

    path = Path(out_dir) / "dataset_description.json"
    if path.exists():
        if dataset_type(out_dir) != "derivative":
            log.warning("%s exists and does not say DatasetType 'derivative'; left as it is", path)
        return None
    io.write_json(path, dataset_description(links))
    return path
