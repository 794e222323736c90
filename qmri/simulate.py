"""Simulation from the model declarations: parameter priors, signals, noise and block phantoms.

Used by the phantoms (digital reference objects with known ground truth), the benchmarks and the
training of network estimators. Noise follows the magnitude-MRI model: Rician noise of scale
``sigma`` is the magnitude of a complex signal with Gaussian noise in both channels (Gudbjartsson &
Patz, MRM 1995;34:910).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from qmri import io
from qmri.errors import QMRIInputError
from qmri.resultset import ResultSet


# ---------------------------------------------------------------------------------------------
# Priors, signals, noise
# ---------------------------------------------------------------------------------------------
def sample_parameters(spec, n: int, rng, *, prior: dict | None = None, lower=None, upper=None) -> np.ndarray:
    """Parameter vectors drawn uniformly within bounds.

    Parameters
    ----------
    spec : qmri.models.base.SignalModel
        The declaration (parameter order, declared bounds).
    n : int
        Number of vectors.
    rng : numpy.random.Generator
    prior : dict, optional
        ``{name: (low, high)}`` replacing the range of some parameters (a user prior).
    lower, upper : array_like (n_params,), optional
        Bounds replacing the declared ones (e.g. a model's resolved bounds).

    Returns
    -------
    ndarray, shape (n, n_params)

    Raises
    ------
    QMRIInputError
        A parameter whose range is not finite (give it in ``prior``), an unknown name in ``prior``.
    """
    lo = np.array(spec.lower if lower is None else lower, dtype=np.float64)
    hi = np.array(spec.upper if upper is None else upper, dtype=np.float64)
    for name, (a, b) in (prior or {}).items():
        if name not in spec.names:
            raise QMRIInputError(f"unknown parameter {name!r} in prior; {spec.name} has {', '.join(spec.names)}")
        j = spec.names.index(name)
        lo[j], hi[j] = float(a), float(b)
    bad = [spec.names[j] for j in range(lo.size) if not (np.isfinite(lo[j]) and np.isfinite(hi[j]))]
    if bad:
        raise QMRIInputError(f"no finite range for {', '.join(bad)}: give one in the prior")
    return lo + (hi - lo) * rng.random((int(n), lo.size))


def add_rician_noise(signal, sigma, rng) -> np.ndarray:
    """``|S + N(0, σ) + i·N(0, σ)|``: Rician noise of scale ``sigma`` (array-broadcast)."""
    real = signal + rng.normal(0.0, 1.0, signal.shape) * sigma
    imag = rng.normal(0.0, 1.0, signal.shape) * sigma
    return np.hypot(real, imag)


def add_gaussian_noise(signal, sigma, rng) -> np.ndarray:
    """``S + N(0, σ)``: Gaussian noise of standard deviation ``sigma`` (array-broadcast)."""
    return signal + rng.normal(0.0, 1.0, np.shape(signal)) * sigma


def nrmse_bias(estimate, truth, mask) -> tuple[float, float]:
    """NRMSE and relative bias of ``estimate`` against ``truth`` over ``mask``.

    ``NRMSE = sqrt(mean((est - true)²)) / mean(|true|)`` and ``bias = mean(est - true) / mean(|true|)``,
    over voxels where both are finite (failed fits count as missing).
    """
    e = np.asarray(estimate)[mask]
    t = np.asarray(truth)[mask]
    ok = np.isfinite(e) & np.isfinite(t)
    if not ok.any():
        return float("nan"), float("nan")
    err = e[ok] - t[ok]
    scale = np.mean(np.abs(t[ok]))
    return float(np.sqrt(np.mean(err ** 2)) / scale), float(np.mean(err) / scale)


# ---------------------------------------------------------------------------------------------
# Phantoms
# ---------------------------------------------------------------------------------------------
@dataclass
class Phantom:
    """A phantom volume with its ground truth.

    Attributes
    ----------
    name : str
        Family and file stem (``"ivim"``...).
    data : ndarray, shape (X, Y, Z, n_measurements)
        Noisy signal.
    mask : ndarray of bool, shape (X, Y, Z)
        Voxels inside a tissue region.
    truth : dict of str to ndarray (X, Y, Z)
        Ground-truth parameter maps (NaN outside the mask).
    units : dict of str to str
        Units of the truth maps.
    labels : ndarray of int16, shape (X, Y, Z)
        Region index + 1 (0 = background).
    regions : list of dict
        Region definitions (name and parameter values).
    acquisition : dict
        What the data were acquired with (``bvals``...), written to ``<name>.json``.
    affine : ndarray (4, 4)
        Voxel-to-world transform (1 mm isotropic).
    files : dict of str to str
        Text files written beside the images (``{"ivim.bval": "0 10 ..."}``).
    images : dict of str to ndarray
        Further images written beside the data (``{"dce_conc": concentration}``).
    fit_hint : str
        A command that fits the phantom, with ``{out}`` for its folder.
    """

    name: str
    data: np.ndarray
    mask: np.ndarray
    truth: dict
    units: dict
    labels: np.ndarray
    regions: list
    acquisition: dict
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    files: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)
    fit_hint: str = ""

    def file_names(self) -> list[str]:
        """Every file :func:`save_phantom` writes."""
        names = [f"{self.name}.nii.gz", "mask.nii.gz", "labels.nii.gz", f"{self.name}.json"]
        names += [f"truth_{k}.nii.gz" for k in self.truth] + [f"{k}.nii.gz" for k in self.images]
        return names + list(self.files)


def load_definition(name: str) -> dict:
    """The phantom definition ``phantoms/<name>.json`` shipped with qmri.

    Raises
    ------
    QMRIInputError
        No definition of that name.
    """
    try:
        text = resources.files("qmri.phantoms").joinpath(f"{name}.json").read_text()
    except FileNotFoundError:
        raise QMRIInputError(f"no phantom definition named {name!r}") from None
    return json.loads(text)


def block_layout(n_regions: int, block) -> tuple[tuple[int, int, int], np.ndarray]:
    """Place ``n_regions`` blocks of size ``block`` (bx, by, bz) on a near-square grid in x–y.

    Returns the volume shape and an int16 label volume (region index + 1, 0 background).
    """
    bx, by, bz = (int(v) for v in block)
    nx = int(np.ceil(np.sqrt(n_regions)))
    ny = int(np.ceil(n_regions / nx))
    shape = (nx * bx, ny * by, bz)
    labels = np.zeros(shape, dtype=np.int16)
    for r in range(n_regions):
        i, j = r % nx, r // nx
        labels[i * bx:(i + 1) * bx, j * by:(j + 1) * by, :] = r + 1
    return shape, labels


def checked_block(block, default) -> tuple[int, int, int]:
    """``block`` (or ``default``) as 3 positive integers.

    Raises
    ------
    QMRIInputError
        Not 3 positive integers.
    """
    block = tuple(int(b) for b in (default if block is None else block))
    if len(block) != 3 or min(block) < 1:
        raise QMRIInputError(f"block must be 3 positive integers, got {block}")
    return block


def check_snr(snr: float) -> float:
    """``snr`` as a positive float (``inf`` allowed: noise-free)."""
    snr = float(snr)
    if not snr > 0:
        raise QMRIInputError(f"SNR must be positive, got {snr}")
    return snr


def block_phantom(model, definition: dict, *, snr: float, seed: int = 0, block=None) -> Phantom:
    """A phantom of one block of voxels per region, each region a set of parameter values.

    Parameters
    ----------
    model : qmri.models.model.Model
        Bound to the phantom's acquisition; its ``signal(dict)`` gives the noise-free signal and
        ``spec`` names the parameters.
    definition : dict
        ``name``, ``regions`` (list of ``{"name": ..., <parameter>: value}``), ``block`` (default
        voxels per region), ``units`` and ``source``; parameters missing from a region take the
        definition's top-level value (e.g. a common ``S0``).
    snr : float
        ``S0 / sigma`` of the Rician noise, ``S0`` being the definition's amplitude parameter
        (e.g. a common ``S0``; else the median over regions); ``inf``: noise-free.
    seed : int
    block : tuple of 3 int, optional

    Returns
    -------
    Phantom
        Truth maps of every declared parameter, NaN outside the mask.

    Raises
    ------
    QMRIInputError
        SNR not positive, bad block size.
    """
    snr = check_snr(snr)
    shape, labels = block_layout(len(definition["regions"]), checked_block(block, definition["block"]))
    mask = labels > 0
    names = model.spec.names
    truth = {k: np.full(shape, np.nan) for k in names}
    for r, reg in enumerate(definition["regions"]):
        sel = labels == r + 1
        for k in names:
            truth[k][sel] = reg.get(k, definition.get(k))
    clean = np.zeros(shape + (model.n_measurements,))
    clean[mask] = model.predict({k: v[mask] for k, v in truth.items()})
    rng = np.random.default_rng(seed)
    # one noise level for the whole volume (background included): the definition's amplitude
    # (e.g. a common S0) or the median amplitude of the regions
    amp = definition.get(model.amplitude) if model.amplitude else None
    if amp is None:
        amp = float(np.median(truth[model.amplitude][mask])) if model.amplitude else float(np.abs(clean).max())
    data = clean if np.isinf(snr) else add_rician_noise(clean, amp / snr, rng)
    units = definition.get("units", {})
    return Phantom(name=definition["name"], data=data, mask=mask, truth=truth,
                   units={k: units.get(k, model.spec.units.get(k, "")) for k in truth}, labels=labels,
                   regions=definition["regions"], acquisition={"snr": snr, "seed": seed,
                                                                "source": definition.get("source", "")})


def save_phantom(ph: Phantom, out_dir, *, force: bool = False) -> list[Path]:
    """Write a phantom: ``<name>.nii.gz`` (data), ``mask.nii.gz``, ``labels.nii.gz``,
    ``truth_<param>.nii.gz``, the further ``images``, ``<name>.json`` (regions and acquisition)
    and the text ``files`` (e.g. the ``.bval``), as one :class:`qmri.resultset.ResultSet` (all
    files or none, even if the process is killed); nothing is written if a target exists and
    ``force`` is False.

    Raises
    ------
    OutputExistsError
        A target exists and ``force`` is False.
    """
    with ResultSet(out_dir, ph.file_names(), force=force) as rs:
        io.write_map(rs.path(f"{ph.name}.nii.gz"), ph.data, affine=ph.affine)
        io.write_map(rs.path("mask.nii.gz"), ph.mask.astype(np.float32), affine=ph.affine)
        io.write_map(rs.path("labels.nii.gz"), ph.labels.astype(np.float32), affine=ph.affine)
        for k, v in ph.truth.items():
            io.write_map(rs.path(f"truth_{k}.nii.gz"), v, affine=ph.affine, intent=f"{k} ({ph.units.get(k, '')})")
        for k, v in ph.images.items():
            io.write_map(rs.path(f"{k}.nii.gz"), v, affine=ph.affine)
        io.write_json(rs.path(f"{ph.name}.json"), {"name": ph.name, "units": ph.units, "regions": ph.regions,
                                                   "acquisition": ph.acquisition})
        for fname, text in ph.files.items():
            io.write_text(rs.path(fname), text)
    return rs.targets


def bval_text(bvals) -> str:
    """FSL ``.bval`` text (one row) for b-values in s/mm²."""
    return " ".join(f"{b:g}" for b in np.asarray(bvals, dtype=np.float64)) + "\n"


def bvec_text(bvecs) -> str:
    """FSL ``.bvec`` text (3 rows) for (n, 3) vectors."""
    g = np.asarray(bvecs, dtype=np.float64)
    return "\n".join(" ".join(f"{v:.8f}" for v in g[:, j]) for j in range(3)) + "\n"
