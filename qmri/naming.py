"""How a fit's outputs are named: the two naming policies, in one place.

:class:`PrefixNaming` gives qmri's own names (``<out_dir>/<prefix><map>.nii.gz``, units as qmri
writes them); :class:`BIDSNaming` names the maps of a fit as a BIDS derivative dataset (BEP016's
``model-``/``param-`` entities, ratified qMRI suffixes where they exist, CMIXF units, BIDS URIs).
:func:`wants_bids` chooses between them for a fit. Both give :meth:`qmri.maps.ParameterMaps.save`
the same five answers: the folder, a map's file, another file of the set, the sources and a
sidecar's naming keys.

Sources: BIDS specification 1.11 (qMRI maps, derivatives, BIDS URIs, units in CMIXF), BEP016
(diffusion derivatives, proposed).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from qmri.bids import (dataset_root, dataset_type, parse_name, ratified_map_suffixes, schema_entities,
                       split_image_name)
from qmri.errors import QMRIInputError

#: Source entities that name one image of a collection (a flip angle, an echo...): a map fitted to
#: the whole collection does not carry them.
COLLECTION_ENTITIES = ("flip", "echo", "inv", "mt", "part")
#: BIDS datatypes a series' folder may be.
DATATYPES = ("anat", "dwi", "perf", "func", "fmap")


class PrefixNaming:
    """qmri's own names: ``<out_dir>/<prefix><map>.nii.gz`` with ``<prefix><map>.json``, extra files
    ``<prefix><name>``; sidecar ``Units`` as qmri writes units (``mm2/s``), ``Sources`` the paths
    given. (The other policy, BIDS derivative names: :class:`BIDSNaming`.)

    Raises :class:`QMRIInputError` for a prefix with a path separator (``../x_``): the files of a
    set stay in its folder."""

    def __init__(self, prefix: str = ""):
        prefix = str(prefix)
        if any(sep and sep in prefix for sep in (os.sep, os.altsep, "\0")):
            raise QMRIInputError(f"--prefix {prefix!r}: a prefix is the start of a file name and cannot hold a path "
                                 "separator; give the folder with --out-dir")
        self.prefix = prefix

    def folder(self, out_dir) -> Path:
        return Path(out_dir)

    def map_file(self, name: str, kind: str) -> str:
        return f"{self.prefix}{name}.nii.gz"

    def extra_file(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def sources(self, paths) -> list[str]:
        return [str(p) for p in paths]

    def sidecar(self, unit: str, provenance: dict) -> dict:
        return {"Units": unit, **estimation(provenance)}


def to_label(text: str) -> str:
    """``text`` as a BIDS label (letters and digits only): ``n_iter`` → ``niter``."""
    return re.sub(r"[^0-9a-zA-Z]", "", str(text))


def build_name(entities: dict, suffix: str, extension: str = "") -> str:
    """A BIDS file name: ``entities`` in the schema's order, then ``_<suffix><extension>``.

    Raises
    ------
    ValueError
        An entity unknown to the schema (and not proposed), or a value not of its format.
    """
    order, patterns = schema_entities()
    unknown = [k for k in entities if k not in patterns]
    if unknown:
        raise ValueError(f"unknown BIDS entity {unknown[0]!r}")
    parts = []
    for key in order:
        if key in entities:
            value = str(entities[key])
            if not re.fullmatch(patterns[key], value):
                raise ValueError(f"BIDS entity {key}-{value}: value does not match {patterns[key]}")
            parts.append(f"{key}-{value}")
    return "_".join(parts + [suffix]) + extension


def cmixf(unit: str) -> str:
    """A qmri unit as CMIXF (BIDS ``Units``): ``mm2/s`` → ``mm^2/s``, ``a.u.`` → ``arbitrary``, ``mM`` →
    ``mmol/L``, no unit → ``1`` (the SI unit one)."""
    unit = str(unit or "").strip()
    if not unit:
        return "1"
    if unit in ("a.u.", "au", "arbitrary"):
        return "arbitrary"
    return re.sub(r"(?<=[a-zA-Z])(\d)", r"^\1", unit.replace("mM", "mmol/L"))


def bids_uri(path, dataset: str, root) -> str:
    """``bids:<dataset>:<path relative to root>``; a file outside ``root`` (or no root): its ``file://`` URI."""
    path = Path(path).resolve()
    if root is not None:
        try:
            return f"bids:{dataset}:{path.relative_to(Path(root).resolve()).as_posix()}"
        except ValueError:
            pass
    return path.as_uri()


class BIDSNaming:
    """Names of a fit's outputs as a BIDS derivative dataset rooted at the output folder.

    Policy
    ------
    * Folder: ``<out_dir>/sub-<label>[/ses-<label>]/<datatype>/``, the datatype being the series'
      folder (``dwi``, ``anat``, ``perf``...) or ``datatype`` (the workflow's, :attr:`qmri.workflows.job.Workflow.bids_datatype`).
    * Entities: the series' own (``sub``, ``ses``, ``acq``, ``run``, ``dir``...), less those of one
      image of a collection (:data:`COLLECTION_ENTITIES`).
    * A parameter whose ``<name>map`` is a ratified qMRI suffix, on an ``anat`` series (VFA ``T1`` →
      ``sub-01_T1map.nii.gz``, ``M0`` → ``..._M0map``): that suffix.
    * Every other map: ``<entities>_model-<model>_param-<name>_<suffix>`` (BEP016), e.g.
      ``sub-01_ses-1_model-ivim_param-D_dwimap.nii.gz``, DCE ``sub-01_model-etm_param-Ktrans_dcemap``;
      ``<model>`` is :meth:`qmri.models.model.Model.label`, ``<name>`` the map name as a label
      (``n_iter`` → ``niter``); ``<suffix>`` the workflow's (:attr:`qmri.workflows.job.Workflow.bids_suffix`).
    * Standard errors: the parameter's name with ``desc-se`` (``..._param-D_desc-se_dwimap``,
      ``sub-01_desc-se_T1map``).
    * Other files of the set (figures, the AIF table): ``<entities>_model-<model>_<name>``.
    * Sidecars: ``Units`` in CMIXF (:func:`cmixf`), ``Sources`` as BIDS URIs (``bids:raw:...`` with
      ``DatasetLinks`` in ``dataset_description.json`` when the series is in a BIDS dataset, else
      ``file://`` URIs), ``EstimationAlgorithm``, ``EstimationReference``.

    Names are built from the schema's entity order and formats (:func:`build_name`).

    Parameters
    ----------
    series : path
        The fitted series; its name must start with ``sub-<label>``.
    model_label : str
    suffix : str
        Suffix of the model maps (``dwimap``...).
    datatype : str
        Datatype folder when the series is not in a datatype folder of its own (``dwi``, ``perf``, ``anat``).

    Raises
    ------
    QMRIInputError
        The series' name is not a BIDS name with a subject.
    """

    def __init__(self, series, model_label: str, suffix: str, datatype: str):
        self.series = Path(series)
        stem, _ = split_image_name(series)
        entities, _ = parse_name(stem)
        if "sub" not in entities:
            raise QMRIInputError(f"{series}: BIDS outputs need a BIDS-named series (sub-<label>_..._<suffix>"
                                 ".nii.gz); rename it or leave out --bids")
        self.entities = {k: v for k, v in entities.items() if k not in COLLECTION_ENTITIES}
        self.model = to_label(model_label)
        self.suffix = suffix
        parent = self.series.resolve().parent.name
        self.datatype = parent if parent in DATATYPES else datatype
        self.source_root = dataset_root(series)
        folder = Path(f"sub-{self.entities['sub']}")
        if "ses" in self.entities:
            folder = folder / f"ses-{self.entities['ses']}"
        self.subfolder = folder / self.datatype
        self._ratified = ratified_map_suffixes() if self.datatype == "anat" else frozenset()

    def folder(self, out_dir) -> Path:
        """Where the maps go: ``out_dir/sub-<label>[/ses-<label>]/<datatype>``."""
        return Path(out_dir) / self.subfolder

    def map_file(self, name: str, kind: str) -> str:
        """File name of map ``name`` (``kind``: parameter, standard_error, crlb or quality)."""
        suffix = {"standard_error": "se", "crlb": "crlb"}.get(kind)
        param = name[:-len(suffix) - 1] if suffix else name
        desc = {"desc": suffix} if suffix else {}
        if f"{param}map" in self._ratified and kind != "quality":
            return build_name({**self.entities, **desc}, f"{param}map", ".nii.gz")
        return build_name({**self.entities, "model": self.model, "param": to_label(param), **desc}, self.suffix,
                          ".nii.gz")

    def extra_file(self, name: str) -> str:
        stem, ext = (name.rsplit(".", 1) + [""])[:2]
        return build_name({**self.entities, "model": self.model}, to_label(stem), "." + ext if ext else "")

    def sources(self, paths) -> list[str]:
        return [bids_uri(p, "raw", self.source_root) for p in paths]

    def sidecar(self, unit: str, provenance: dict) -> dict:
        """The BIDS keys of one map's sidecar."""
        out = {"Units": cmixf(unit)}
        out.update(estimation(provenance))
        return out

    def dataset_links(self, out_dir) -> dict:
        """``DatasetLinks`` of the derivative dataset: ``raw`` → the source dataset (relative path)."""
        if self.source_root is None:
            return {}
        return {"raw": os.path.relpath(self.source_root, Path(out_dir).resolve())}


def estimation(provenance: dict) -> dict:
    """``EstimationAlgorithm`` (method and its description) and ``EstimationReference`` (method and
    model references) of a fit, from its provenance."""
    out = {}
    if provenance.get("method"):
        desc = provenance.get("method_description", "")
        out["EstimationAlgorithm"] = f"{provenance['method']}: {desc}" if desc else str(provenance["method"])
    refs = [r for r in (provenance.get("method_reference"), provenance.get("reference")) if r]
    if refs:
        out["EstimationReference"] = "; ".join(dict.fromkeys(refs))
    return out


def wants_bids(series, out_dir, requested: bool | None) -> bool:
    """Whether to write BIDS derivatives: as ``requested``, or (None) when the series is in a BIDS
    dataset and ``out_dir`` is a derivatives folder (a path through a folder called ``derivatives``,
    or a dataset whose ``DatasetType`` is ``derivative``)."""
    if requested is not None:
        return bool(requested)
    if dataset_root(series) is None:
        return False
    out = Path(out_dir).resolve()
    if "derivatives" in out.parts:
        return True
    return (out / "dataset_description.json").is_file() and dataset_type(out) == "derivative"
