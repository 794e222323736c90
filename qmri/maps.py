"""The result type of every fit: dense parameter maps with units, quality maps, geometry and provenance."""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from qmri import __version__, threads
from qmri.errors import QMRIInputError
from qmri.fitting.result import STATUS_LABELS, STATUS_NOT_FITTED, FitResult

#: Quality maps written with every fit, and their units (``rmse`` takes the unit of the fitted data,
#: :attr:`qmri.models.model.Model.data_unit`; this default is for results built by hand).
QUALITY_UNITS = {"rmse": "a.u.", "r2": "", "status": "", "n_iter": ""}
#: Integer quality maps: their NIfTI data type; voxels outside the mask hold ``STATUS_NOT_FITTED`` (-1).
INTEGER_MAPS = {"status": np.int8, "n_iter": np.int32}
#: Sidecar keys written by :meth:`ParameterMaps.save` besides the provenance.
_FIXED_KEYS = {"QmriVersion", "Created", "OutsideMask", "StatusCodes", "Sources", "Parameter", "Units", "Kind",
               "Maps", "MapFiles", "ResultSet", "EstimationAlgorithm", "EstimationReference"}
#: A fit is evidently wrong (:meth:`ParameterMaps.warnings`) when the median R² of the fitted voxels
#: is below this...
MIN_MEDIAN_R2 = 0.8
#: ... or when more than this fraction of them have a parameter at a bound, or failed.
MAX_AT_BOUND = 0.5
MAX_FAILED = 0.5


class ParameterMaps(Mapping):
    """Parameter and quality maps of one fit.

    Behaves as a read-only mapping from a label to an array of the data's spatial shape:
    parameters (``maps["D"]``), their standard errors (``maps["D_se"]``, when computed), their
    Cramér–Rao lower bounds (``maps["D_crlb"]``, when computed) and the quality maps ``rmse``,
    ``r2`` (float, NaN outside the mask), ``status`` (int8: 0 converged,
    1 max-iter, 2 failed, -1 outside the mask) and ``n_iter`` (int32, -1 outside the mask).

    Attributes
    ----------
    params : dict of str to ndarray
        Parameter maps (float64, NaN outside the mask), in the model's output order.
    units : dict of str to str
        Unit of every map (parameters, standard errors and quality maps).
    quality : dict of str to ndarray
        ``rmse``, ``r2``, ``status``, ``n_iter``.
    se : dict of str to ndarray
        Standard-error maps keyed by parameter name (empty when not computed).
    crlb : dict of str to ndarray
        Cramér–Rao lower bounds of the standard deviation keyed by parameter name, in the
        parameter's unit (:mod:`qmri.fitting.crlb`; empty when not computed).
    vectors : dict of str to ndarray
        Outputs of several values per voxel, shape ``spatial + (k,)`` (e.g. DKI ``DT``, ``KT``;
        empty unless asked for), written as 4-D images.
    mask : ndarray of bool
        Voxels that were fitted.
    provenance : dict
        Model, method, bounds, acquisition, timings: written into every sidecar. Keys are
        lower-case ``snake_case`` (sidecars hold them in ``CamelCase``).
    affine : ndarray (4, 4) or None
        Voxel-to-world transform of the fitted data (written with the maps).
    header : nibabel header or None
        Header of the fitted image (orientation codes, voxel sizes), kept in the written maps.
    kinds : dict of str to str
        The kind of each map (a sidecar's ``Kind``) as the fit declared it
        (:attr:`qmri.models.request.FitRequest.outputs`) or the sidecars recorded it; a map not
        named here takes the kind of where it is held (:func:`map_kind` for its name).
    """

    def __init__(self, params, units, quality, se, mask, provenance, *, affine=None, header=None, vectors=None,
                 crlb=None, kinds=None):
        self.params = dict(params)
        self.crlb = dict(crlb or {})
        self.vectors = dict(vectors or {})
        self.quality = dict(quality)
        self.se = dict(se)
        self.mask = mask
        self.provenance = dict(provenance)
        self.units = dict(QUALITY_UNITS)
        self.units.update(units)
        for name in self.se:
            self.units.setdefault(f"{name}_se", self.units.get(name, ""))
        for name in self.crlb:
            self.units.setdefault(f"{name}_crlb", self.units.get(name, ""))
        self.affine = None if affine is None else np.asarray(affine, dtype=np.float64)
        self.header = header
        self.kinds = {name: kind for name, kind in (kinds or {}).items() if name in self._all()}

    @classmethod
    def from_flat(cls, result: FitResult, index: np.ndarray, shape: tuple, units: dict, provenance: dict,
                  order: str = "C", *, kinds: dict | None = None, affine=None, header=None):
        """Scatter flat per-voxel results into volumes of ``shape`` (NaN, or -1 for the integer maps,
        outside ``index``); ``index`` counts voxels in ``order`` ("C" or "F"). ``provenance`` is kept as
        given; ``kinds`` (``{map: kind}``), ``affine`` and ``header`` are given to the maps."""
        n_total = int(np.prod(shape)) if len(shape) else 1

        def scatter(values, fill=np.nan, dtype=np.float64):
            vol = np.full(n_total, fill, dtype=dtype)
            vol[index] = values
            return vol.reshape(shape, order=order)

        mask = np.zeros(n_total, dtype=bool)
        mask[index] = True
        params = {k: scatter(v) for k, v in result.params.items()}
        quality = {
            "rmse": scatter(result.rmse),
            "r2": scatter(result.r2),
            "status": scatter(result.status, STATUS_NOT_FITTED, INTEGER_MAPS["status"]),
            "n_iter": scatter(result.n_iter, STATUS_NOT_FITTED, INTEGER_MAPS["n_iter"]),
        }
        se = {k: scatter(v) for k, v in result.se.items()}
        crlb = {k: scatter(v) for k, v in result.crlb.items()}
        vectors = {}
        for k, v in result.vectors.items():
            vol = np.full((n_total, v.shape[1]), np.nan)
            vol[index] = v
            vectors[k] = vol.reshape(tuple(shape) + (v.shape[1],), order=order)
        return cls(params, units, quality, se, mask.reshape(shape, order=order), provenance, vectors=vectors,
                   crlb=crlb, kinds=kinds, affine=affine, header=header)

    # Mapping protocol -------------------------------------------------------------------------
    def _all(self) -> dict:
        out = dict(self.params)
        out.update({f"{k}_se": v for k, v in self.se.items()})
        out.update({f"{k}_crlb": v for k, v in self.crlb.items()})
        out.update(self.vectors)
        out.update(self.quality)
        return out

    def __getitem__(self, key):
        return self._all()[key]

    def __iter__(self):
        return iter(self._all())

    def __len__(self):
        return len(self._all())

    def __repr__(self):
        return (f"ParameterMaps(model={self.provenance.get('model')}, method={self.provenance.get('method')}, "
                f"shape={self.mask.shape}, params={list(self.params)})")

    # Summaries --------------------------------------------------------------------------------
    @property
    def status(self) -> np.ndarray:
        """Fit status map (int8: 0 converged, 1 max-iter, 2 failed, -1 outside the mask)."""
        return self.quality["status"]

    @property
    def converged_fraction(self) -> float:
        """Fraction of fitted voxels whose status is ``converged``."""
        return self.provenance["converged_fraction"]

    def medians(self) -> dict[str, float]:
        """Median of each parameter over fitted voxels with finite values."""
        out = {}
        for k, v in self.params.items():
            vals = v[self.mask]
            vals = vals[np.isfinite(vals)]
            out[k] = float(np.median(vals)) if vals.size else float("nan")
        return out

    def median_r2(self) -> float:
        """Median R² over fitted voxels with a finite R² (NaN if none)."""
        r2 = self.quality["r2"][self.mask]
        r2 = r2[np.isfinite(r2)]
        return float(np.median(r2)) if r2.size else float("nan")

    def report(self) -> dict:
        """The summary as data: model, method, voxel counts, fractions, median R², fit time, and per
        parameter the median, unit and the fractions of voxels at the lower and upper bound.

        Bound fractions are those :meth:`qmri.models.model.Model.fit` recorded (provenance
        ``at_bound``); parameters without bounds (or results built otherwise) have none.
        """
        p = self.provenance
        at_bound = p.get("at_bound") or {}
        params = {}
        for name, med in self.medians().items():
            entry = {"median": med, "unit": self.units.get(name, "")}
            if name in at_bound:
                entry["at_lower_bound"], entry["at_upper_bound"] = at_bound[name]
                entry["bounds"] = (p.get("bounds") or {}).get(name)
            params[name] = entry
        return {"model": p.get("model"), "method": p.get("method"), "n_voxels": p.get("n_voxels"),
                "converged_fraction": self.converged_fraction, "failed_fraction": p.get("failed_fraction", 0.0),
                "median_r2": self.median_r2(), "fit_seconds": p.get("fit_seconds"), "parameters": params}

    def summary(self) -> str:
        """A few lines: voxels, converged and failed fractions, median R², time, and per parameter the
        median with its unit and the fraction of voxels at a bound."""
        r = self.report()
        lines = [
            f"model {r['model']}  method {r['method']}",
            f"voxels fitted {r['n_voxels']}  converged {100 * r['converged_fraction']:.1f}%  "
            f"failed {100 * r['failed_fraction']:.1f}%  median R2 {r['median_r2']:.3f}  "
            f"time {r['fit_seconds'] or 0:.2f} s",
        ]
        for k, e in r["parameters"].items():
            line = f"  median {k:<8s} {e['median']:<11.6g} {e['unit']:<14s}"
            if "at_lower_bound" in e:
                line += f" at bound {100 * (e['at_lower_bound'] + e['at_upper_bound']):.1f}%"
            lines.append(line.rstrip())
        return "\n".join(lines)

    def out_of_range(self) -> list[str]:
        """One sentence per float32 map with finite values beyond the float32 range (|v| > 3.4e38),
        which :meth:`save` writes as float64 (:func:`qmri.io.write_map`) so that no value becomes
        infinite (e.g. S0 of a series on a scale near float64's limit)."""
        limit = float(np.finfo(np.float32).max)
        out = []
        for name, v in self._all().items():
            if self._kind(name) == "quality" and name in ("status", "n_iter"):
                continue
            v = np.asarray(v, dtype=np.float64)
            with np.errstate(invalid="ignore"):
                n = int(np.sum(np.isfinite(v) & (np.abs(v) > limit)))
            if n:
                out.append(f"{name}: {n} voxel(s) beyond the float32 range of the NIfTI map (|value| > {limit:.3g}) "
                           "so the map is written as float64; rescale the series for float32 maps")
        return out

    def warnings(self, hint: str = "") -> list[str]:
        """Signs that the fit is evidently wrong, one sentence each (empty when none).

        Flags a median R² below :data:`MIN_MEDIAN_R2`, a parameter at one of its bounds in more than
        :data:`MAX_AT_BOUND` of the fitted voxels (there the value is the bound, not an estimate), and
        more than :data:`MAX_FAILED` of the voxels failed. ``hint`` (the likely cause, e.g. the
        units of the b-values) is added as a last item when there is any warning.
        """
        r = self.report()
        out = []
        if r["median_r2"] < MIN_MEDIAN_R2:
            out.append(f"median R2 is {r['median_r2']:.3f} (below {MIN_MEDIAN_R2}): the model describes the data "
                       "poorly in most fitted voxels (or the mask holds many voxels without signal)")
        for name, e in r["parameters"].items():
            for side in ("lower", "upper"):
                frac = e.get(f"at_{side}_bound", 0.0)
                if frac > MAX_AT_BOUND:
                    bound = e["bounds"][0 if side == "lower" else 1] if e.get("bounds") else None
                    value = f" ({bound:g} {e['unit']})".replace(" )", ")") if bound is not None else ""
                    out.append(f"{name} is at its {side} bound{value} in {100 * frac:.1f}% of the fitted voxels: "
                               "there the value is the bound, not an estimate")
        if r["failed_fraction"] > MAX_FAILED:
            out.append(f"the fit failed in {100 * r['failed_fraction']:.1f}% of the fitted voxels")
        if out and hint:
            out.append(f"likely cause: {hint}")
        return out

    # Output -----------------------------------------------------------------------------------
    def output_paths(self, out_dir, prefix: str = "", naming=None) -> dict[str, Path]:
        """The NIfTI path of every map that :meth:`save` writes (sidecars sit beside, ``.json``)."""
        from qmri.naming import PrefixNaming

        naming = naming or PrefixNaming(prefix)
        folder = naming.folder(out_dir)
        return {name: folder / naming.map_file(name, self._kind(name)) for name in self._all()}

    def save(self, out_dir, *, affine=None, header=None, prefix: str = "", force: bool = False,
             sources=None, extra=None, naming=None) -> list[Path]:
        """Write one NIfTI and one JSON sidecar per map (and any ``extra`` files) as one result set.

        Parameter, standard-error, ``rmse`` and ``r2`` maps are float32 (NaN outside the mask),
        :attr:`vectors` 4-D float32 images; ``status`` is int8 and ``n_iter`` int32 (-1 outside the
        mask). The files are written as a :class:`qmri.resultset.ResultSet`: all appear together or
        none does, even if the process is killed; every sidecar records the set (``ResultSet``: its
        id and files), which :meth:`load` checks.

        Parameters
        ----------
        out_dir : path
            Folder (created if needed).
        affine : ndarray (4, 4), optional
            Voxel-to-world transform; default the maps' own (:attr:`affine`), else identity.
        header : nibabel header, optional
            Header of the input image, kept (data type and scaling reset); default :attr:`header`.
        prefix : str
            Prepended to every file name (``<prefix>D.nii.gz``), ``extra`` ones included.
        force : bool
            Overwrite existing files. Without it, nothing is written if any target exists.
        sources : list of str, optional
            Input files, recorded in the sidecars.
        extra : dict of str to callable, optional
            Further files of the set, ``{file name: write(path)}`` (e.g. a figure or a table):
            each function writes its file at the path it is given.
        naming : optional
            How files are named and where they go (:mod:`qmri.naming`): ``PrefixNaming`` (default,
            with ``prefix``) or ``BIDSNaming`` (BIDS derivative names and sidecar keys). Every
            sidecar records the file of every map (``MapFiles``), which :meth:`load` reads.

        Returns
        -------
        list of Path
            Files written (NIfTI and JSON per map, then the extra files).

        Raises
        ------
        OutputExistsError
            An output exists and ``force`` is False (nothing is written).
        ValueError
            A provenance key that is not lower-case ``snake_case`` (it could not be read back).
        """
        from qmri import io
        from qmri.naming import PrefixNaming
        from qmri.resultset import ResultSet

        if naming is not None and prefix:
            raise QMRIInputError("a prefix cannot be combined with BIDS names (--prefix with --bids)")
        naming = naming or PrefixNaming(prefix)
        affine = self.affine if affine is None else affine
        header = self.header if header is None else header
        paths = self.output_paths(out_dir, naming=naming)
        folder = naming.folder(out_dir)
        extra = {naming.extra_file(name): write for name, write in (extra or {}).items()}
        names = [n for p in paths.values() for n in (p.name, io.sidecar_path(p).name)] + list(extra)
        provenance = {_camel(k): v for k, v in self.provenance.items()}
        maps = self._all()
        with ResultSet(folder, names, force=force) as rs:
            common = {
                "QmriVersion": __version__,
                "Created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "OutsideMask": "NaN (status and n_iter: -1)",
                "StatusCodes": {str(k): v for k, v in STATUS_LABELS.items()},
                "Sources": naming.sources(sources or []),
                "Maps": list(paths),
                "MapFiles": {name: p.name for name, p in paths.items()},
                "ResultSet": {"Id": rs.id, "Files": rs.names},
            }
            common.update(provenance)
            # maps are compressed in parallel threads (the compressor releases the GIL)
            with ThreadPoolExecutor(max_workers=threads.count()) as pool:
                pending = [pool.submit(io.write_map, rs.path(path.name), maps[name], affine=affine, header=header,
                                       intent=f"{name} ({self.units.get(name, '')})",
                                       dtype=INTEGER_MAPS.get(name, np.float32)) for name, path in paths.items()]
                for name, path in paths.items():
                    side = dict(common)
                    side.update({"Parameter": name, "Kind": self._kind(name)})
                    side.update(naming.sidecar(self.units.get(name, ""), self.provenance))
                    io.write_json(rs.path(io.sidecar_path(path).name), side)
                for name, write in extra.items():
                    write(rs.path(name))
                for job in pending:
                    job.result()
        return rs.targets

    def _kind(self, name: str) -> str:
        """The map's kind: as declared (:attr:`kinds`), else from where it is held and its name."""
        if name in self.kinds:
            return self.kinds[name]
        if name in self.params:
            return "parameter"
        if name in self.quality:
            return "quality"
        if name in self.vectors:
            return "vector"
        return map_kind(name)

    @classmethod
    def load(cls, directory, prefix: str = "") -> "ParameterMaps":
        """Read back the maps that :meth:`save` wrote into ``directory`` with ``prefix``.

        Parameters
        ----------
        directory : path
        prefix : str
            The prefix given to :meth:`save`.

        Returns
        -------
        ParameterMaps
            Maps (float64; ``status`` int8, ``n_iter`` int32), units, provenance, affine and header
            of the first map; ``mask`` from the ``status`` map (voxels with a status >= 0).
            A set whose writer was killed while moving it into place is finished first
            (:func:`qmri.resultset.recover`).

        Raises
        ------
        QMRIInputError
            No qmri maps with that prefix in the folder, a listed map missing or unreadable, or maps
            of different runs (their sidecars name different result sets).
        """
        from qmri import io
        from qmri.resultset import recover

        directory = Path(directory)
        recover(directory)  # finish a set whose run died while moving it into place
        sidecars = sorted(directory.glob(f"{glob_escape(prefix)}*.json")) if directory.is_dir() else []
        first = None
        for path in sidecars:
            try:
                side = io.read_json(path, "JSON sidecar")
            except QMRIInputError:
                continue
            if isinstance(side, dict) and "QmriVersion" in side and "Maps" in side and "Parameter" in side \
                    and path.name == io.sidecar_path(_map_file(side, side["Parameter"], prefix)).name:
                first = side
                break
        if first is None:
            raise QMRIInputError(f"{directory}: no qmri maps{f' with prefix {prefix!r}' if prefix else ''} "
                                 "(expected NIfTI files with JSON sidecars written by qmri)")
        params, se, crlb, quality, units, vectors, kinds = {}, {}, {}, {}, {}, {}, {}
        affine = header = None
        for name in first["Maps"]:
            nii = directory / _map_file(first, name, prefix)
            img = io.load_nifti(nii, what=f"map {name}")
            side_path = io.sidecar_path(nii)
            if not side_path.exists():
                raise QMRIInputError(f"{side_path}: sidecar of {nii.name} not found")
            side = io.read_json(side_path, "JSON sidecar")
            if not isinstance(side, dict):
                raise QMRIInputError(f"{side_path}: JSON sidecar is not an object")
            if _set_id(side) != _set_id(first):
                raise QMRIInputError(f"{side_path}: written by another run than the sidecar of {first['Parameter']} "
                                     "(maps of two runs mixed in one folder); fit again with --force")
            units[name] = side.get("Units", "")
            if isinstance(side.get("Kind"), str):
                kinds[name] = side["Kind"]
            if affine is None:
                affine, header = img.affine, img.header
            if name in INTEGER_MAPS:
                quality[name] = io.series_data(img).astype(INTEGER_MAPS[name])
            elif side.get("Kind") == "quality":
                quality[name] = io.image_data(img)
            elif side.get("Kind") == "standard_error":
                se[name[:-3]] = io.image_data(img)
            elif side.get("Kind") == "crlb":
                crlb[name[:-5]] = io.image_data(img)
            elif side.get("Kind") == "vector":
                vectors[name] = io.image_data(img)
            else:
                params[name] = io.image_data(img)
        provenance = {_snake(k): v for k, v in first.items() if k not in _FIXED_KEYS}
        status = quality.get("status")
        mask = status >= 0 if status is not None else np.all([np.isfinite(v) for v in params.values()], axis=0)
        return cls(params, units, quality, se, mask, provenance, affine=affine, header=header, vectors=vectors,
                   crlb=crlb, kinds=kinds)


def map_kind(name: str) -> str:
    """Kind of a map from its name (a sidecar's ``Kind``): ``quality`` (:data:`QUALITY_UNITS`),
    ``standard_error`` (``<param>_se``), ``crlb`` (``<param>_crlb``: Cramér–Rao lower bound of the
    standard deviation) or ``parameter``."""
    if name in QUALITY_UNITS:
        return "quality"
    if name.endswith("_se"):
        return "standard_error"
    if name.endswith("_crlb"):
        return "crlb"
    return "parameter"


def _map_file(sidecar: dict, name: str, prefix: str) -> str:
    """File of map ``name`` of the set a sidecar belongs to (``MapFiles``; older sets: prefix + name)."""
    files = sidecar.get("MapFiles")
    if isinstance(files, dict) and name in files:
        return files[name]
    return f"{prefix}{name}.nii.gz"


def _set_id(sidecar: dict):
    """Id of the result set a sidecar belongs to (None for sidecars written before sets had one)."""
    record = sidecar.get("ResultSet")
    return record.get("Id") if isinstance(record, dict) else None


def glob_escape(text: str) -> str:
    """``text`` with the glob metacharacters ``*?[`` escaped."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _camel(key: str) -> str:
    """``snake_case`` provenance key → ``CamelCase`` sidecar key (inverse: :func:`_snake`)."""
    out = "".join(part[:1].upper() + part[1:] for part in key.split("_"))
    if _snake(out) != key:
        raise ValueError(f"provenance key {key!r} is not lower-case snake_case; it could not be read back")
    return out


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()
