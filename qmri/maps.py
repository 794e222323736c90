"""The result type of every fit: dense parameter maps with units, quality maps and provenance."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from qmri import __version__
from qmri.errors import OutputExistsError
from qmri.fitting.lm import STATUS_CONVERGED, STATUS_LABELS
from qmri.fitting.result import FitResult

#: Quality maps written with every fit, and their units.
QUALITY_UNITS = {"rmse": "signal units", "r2": "", "status": "", "n_iter": ""}


class ParameterMaps(Mapping):
    """Parameter and quality maps of one fit.

    Behaves as a read-only mapping from a label to a float array of the data's spatial shape:
    parameters (``maps["D"]``), their standard errors (``maps["D_se"]``, when computed) and the
    quality maps ``rmse``, ``r2``, ``status`` (0 converged, 1 max-iter, 2 failed) and ``n_iter``.
    Voxels outside the mask are NaN in every map.

    Attributes
    ----------
    params : dict of str to ndarray
        Parameter maps, in the model's output order.
    units : dict of str to str
        Unit of every map (parameters, standard errors and quality maps).
    quality : dict of str to ndarray
        ``rmse``, ``r2``, ``status``, ``n_iter``.
    se : dict of str to ndarray
        Standard-error maps keyed by parameter name (empty when not computed).
    mask : ndarray of bool
        Voxels that were fitted.
    provenance : dict
        Model, method, bounds, acquisition, timings: written into every sidecar.
    """

    def __init__(self, params, units, quality, se, mask, provenance):
        self.params = dict(params)
        self.quality = dict(quality)
        self.se = dict(se)
        self.mask = mask
        self.provenance = dict(provenance)
        self.units = dict(units)
        self.units.update(QUALITY_UNITS)
        for name in self.se:
            self.units[f"{name}_se"] = self.units.get(name, "")

    @classmethod
    def from_flat(cls, result: FitResult, index: np.ndarray, shape: tuple, units: dict, provenance: dict):
        """Scatter flat per-voxel results into volumes of ``shape`` (NaN outside ``index``)."""
        n_total = int(np.prod(shape)) if len(shape) else 1

        def scatter(values):
            vol = np.full(n_total, np.nan)
            vol[index] = values
            return vol.reshape(shape)

        mask = np.zeros(n_total, dtype=bool)
        mask[index] = True
        params = {k: scatter(v) for k, v in result.params.items()}
        quality = {
            "rmse": scatter(result.rmse),
            "r2": scatter(result.r2),
            "status": scatter(result.status.astype(np.float64)),
            "n_iter": scatter(result.n_iter.astype(np.float64)),
        }
        se = {k: scatter(v) for k, v in result.se.items()}
        prov = dict(provenance)
        n = len(index)
        prov["converged_fraction"] = float(np.mean(result.status == STATUS_CONVERGED)) if n else 0.0
        prov["failed_fraction"] = float(np.mean(result.status == 2)) if n else 0.0
        return cls(params, units, quality, se, mask.reshape(shape), prov)

    # Mapping protocol -------------------------------------------------------------------------
    def _all(self) -> dict:
        out = dict(self.params)
        out.update({f"{k}_se": v for k, v in self.se.items()})
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
        """Fit status map (0 converged, 1 max-iter, 2 failed, NaN outside the mask)."""
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

    def summary(self) -> str:
        """A few lines: voxels, converged fraction, median of each parameter with its unit, time."""
        p = self.provenance
        lines = [
            f"model {p.get('model')}  method {p.get('method')}",
            f"voxels fitted {p.get('n_voxels')}  converged {100 * self.converged_fraction:.1f}%  "
            f"failed {100 * p.get('failed_fraction', 0):.1f}%  time {p.get('fit_seconds', 0):.2f} s",
        ]
        for k, med in self.medians().items():
            unit = self.units.get(k, "")
            lines.append(f"  median {k:<8s} {med:.6g} {unit}".rstrip())
        return "\n".join(lines)

    # Output -----------------------------------------------------------------------------------
    def output_paths(self, out_dir, prefix: str = "") -> dict[str, Path]:
        """The NIfTI path of every map that :meth:`save` writes (sidecars sit beside, ``.json``)."""
        out_dir = Path(out_dir)
        return {name: out_dir / f"{prefix}{name}.nii.gz" for name in self._all()}

    def save(self, out_dir, *, affine=None, header=None, prefix: str = "", force: bool = False,
             sources=None) -> list[Path]:
        """Write one float32 NIfTI and one JSON sidecar per map.

        Parameters
        ----------
        out_dir : path
            Folder (created if needed).
        affine : ndarray (4, 4), optional
            Voxel-to-world transform of the input; identity if not given.
        header : nibabel header, optional
            Header of the input image, kept (data type float32, scaling reset).
        prefix : str
            Prepended to every file name (``<prefix>D.nii.gz``).
        force : bool
            Overwrite existing files. Without it, nothing is written if any target exists.
        sources : list of str, optional
            Input files, recorded in the sidecars.

        Returns
        -------
        list of Path
            Files written (NIfTI and JSON).

        Raises
        ------
        OutputExistsError
            An output exists and ``force`` is False (nothing is written).
        """
        from qmri import io

        paths = self.output_paths(out_dir, prefix)
        targets = []
        for p in paths.values():
            targets += [p, io.sidecar_path(p)]
        if not force:
            existing = [str(t) for t in targets if t.exists()]
            if existing:
                raise OutputExistsError(
                    f"{existing[0]} exists ({len(existing)} output file(s) in all); use --force to overwrite")
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        common = {
            "QmriVersion": __version__,
            "Created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "OutsideMask": "NaN",
            "StatusCodes": {str(k): v for k, v in STATUS_LABELS.items()},
            "Sources": list(sources or []),
        }
        common.update({_camel(k): v for k, v in self.provenance.items()})
        written = []
        maps = self._all()
        for name, path in paths.items():
            io.write_map(path, maps[name], affine=affine, header=header,
                         intent=f"{name} ({self.units.get(name, '')})")
            side = dict(common)
            side.update({"Parameter": name, "Units": self.units.get(name, "")})
            io.write_json(io.sidecar_path(path), side)
            written += [path, io.sidecar_path(path)]
        return written


def _camel(key: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in key.split("_"))
