"""Digital reference objects (phantoms) with known ground truth, built from ``phantoms/*.json``.

A phantom is a small volume made of rectangular blocks, one per tissue region, each filled with
the noise-free model signal of that region's parameters, plus Rician noise of standard deviation
``sigma = S0 / SNR`` (magnitude of a complex signal with Gaussian noise in both channels; the
usual magnitude-MRI noise model, Gudbjartsson & Patz, MRM 1995;34:910).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from qmri.errors import QMRIInputError


@dataclass
class Phantom:
    """A phantom volume with its ground truth.

    Attributes
    ----------
    name : str
        Family (``"ivim"``...).
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
        What the data were acquired with (``bvals``...).
    affine : ndarray (4, 4)
        Voxel-to-world transform (1 mm isotropic).
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


def load_definition(name: str) -> dict:
    """The phantom definition ``phantoms/<name>.json`` shipped with qmri.

    Raises
    ------
    QMRIInputError
        No definition of that name.
    """
    try:
        text = resources.files("qmri.phantom_defs").joinpath(f"{name}.json").read_text()
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


def _checked_layout(definition: dict, snr: float, block):
    """Validate ``snr`` and ``block`` (default the definition's) and lay out the definition's regions.

    Returns the volume shape, the label volume and the mask (labels > 0).
    """
    if not snr > 0:
        raise QMRIInputError(f"SNR must be positive, got {snr}")
    block = tuple(definition["block"] if block is None else block)
    if len(block) != 3 or min(block) < 1:
        raise QMRIInputError(f"block must be 3 positive integers, got {block}")
    shape, labels = block_layout(len(definition["regions"]), block)
    return shape, labels, labels > 0


def add_rician_noise(signal, sigma, rng) -> np.ndarray:
    """``|S + N(0, σ) + i·N(0, σ)|``: Rician noise of scale ``sigma`` (array-broadcast)."""
    real = signal + rng.normal(0.0, 1.0, signal.shape) * sigma
    imag = rng.normal(0.0, 1.0, signal.shape) * sigma
    return np.hypot(real, imag)


def ivim_phantom(*, snr: float = 30.0, seed: int = 0, bvals=None, block=None) -> Phantom:
    """IVIM phantom from ``phantoms/ivim.json``.

    Parameters
    ----------
    snr : float
        S0 / sigma of the Rician noise (``inf`` for noise-free).
    seed : int
        Seed of the noise generator.
    bvals : array_like, optional
        b-values in s/mm² (default: the definition's 13 values, 0–1000).
    block : tuple of 3 int, optional
        Voxels per region along x, y, z (default from the definition, 8×8×2).

    Returns
    -------
    Phantom
        ``data`` shape (X, Y, Z, n_b); truth maps ``S0, f, D, Dstar``.

    Raises
    ------
    QMRIInputError
        SNR not positive, bad b-values or block size.
    """
    from qmri.models.ivim import IVIM

    d = load_definition("ivim")
    b = np.asarray(d["bvals"] if bvals is None else bvals, dtype=np.float64)
    shape, labels, mask = _checked_layout(d, snr, block)
    truth = {k: np.full(shape, np.nan) for k in ("S0", "f", "D", "Dstar")}
    for r, reg in enumerate(d["regions"]):
        sel = labels == r + 1
        truth["S0"][sel] = d["S0"]
        for k in ("f", "D", "Dstar"):
            truth[k][sel] = reg[k]
    model = IVIM(b)
    clean = np.zeros(shape + (b.size,))
    clean[mask] = model.signal({k: v[mask] for k, v in truth.items()})
    rng = np.random.default_rng(seed)
    data = clean if np.isinf(snr) else add_rician_noise(clean, d["S0"] / snr, rng)
    return Phantom(name="ivim", data=data, mask=mask, truth=truth,
                   units={k: d["units"][k] for k in truth}, labels=labels, regions=d["regions"],
                   acquisition={"bvals": b.tolist(), "snr": snr, "seed": seed, "source": d["source"]})


def save_phantom(ph: Phantom, out_dir, *, force: bool = False, extra_files: dict | None = None) -> list[Path]:
    """Write a phantom: ``<name>.nii.gz`` (data), ``mask.nii.gz``, ``labels.nii.gz``,
    ``truth_<param>.nii.gz``, ``<name>.json`` (definition and acquisition) and ``extra_files``
    ({file name: text}, e.g. the ``.bval``). Atomic writes; nothing is written if a target exists
    and ``force`` is False.

    Raises
    ------
    OutputExistsError
        A target exists and ``force`` is False.
    """
    from qmri import io
    from qmri.errors import OutputExistsError

    out = Path(out_dir)
    names = [f"{ph.name}.nii.gz", "mask.nii.gz", "labels.nii.gz", f"{ph.name}.json"]
    names += [f"truth_{k}.nii.gz" for k in ph.truth] + list(extra_files or {})
    targets = [out / n for n in names]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise OutputExistsError(f"{existing[0]} exists ({len(existing)} file(s) in all); use --force to overwrite")
    out.mkdir(parents=True, exist_ok=True)
    io.write_map(out / f"{ph.name}.nii.gz", ph.data, affine=ph.affine)
    io.write_map(out / "mask.nii.gz", ph.mask.astype(np.float32), affine=ph.affine)
    io.write_map(out / "labels.nii.gz", ph.labels.astype(np.float32), affine=ph.affine)
    for k, v in ph.truth.items():
        io.write_map(out / f"truth_{k}.nii.gz", v, affine=ph.affine, intent=f"{k} ({ph.units.get(k, '')})")
    io.write_json(out / f"{ph.name}.json", {"name": ph.name, "units": ph.units, "regions": ph.regions,
                                           "acquisition": ph.acquisition})
    for fname, text in (extra_files or {}).items():
        io.write_text(out / fname, text)
    return targets


def nrmse_bias(estimate, truth, mask) -> tuple[float, float]:
    """NRMSE and relative bias of ``estimate`` against ``truth`` over ``mask``.

    ``NRMSE = sqrt(mean((est - true)²)) / mean(true)`` and ``bias = mean(est - true) / mean(true)``,
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


def dki_protocol(n_b0: int = 3, shells=(1000.0, 2000.0), directions_per_shell: int = 30):
    """A multi-shell DKI protocol: ``n_b0`` b=0 volumes, then ``directions_per_shell`` near-uniform
    directions (Fibonacci half-sphere, rotated differently on each shell) per shell.

    Returns
    -------
    bvals : ndarray (n,), s/mm²
    bvecs : ndarray (n, 3), unit vectors (zeros for b=0)
    """
    from qmri.models.dki import hemisphere

    g = hemisphere(int(directions_per_shell))
    bvals, bvecs = [np.zeros(n_b0)], [np.zeros((n_b0, 3))]
    for k, b in enumerate(shells):
        ang = 0.6 * k  # rotate each shell's set about (1, 1, 1) so that shells interleave
        u = np.ones(3) / np.sqrt(3.0)
        K = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
        R = np.eye(3) + np.sin(ang) * K + (1 - np.cos(ang)) * K @ K
        bvals.append(np.full(len(g), float(b)))
        bvecs.append(g @ R.T)
    return np.concatenate(bvals), np.concatenate(bvecs)


def dki_phantom(*, snr: float = 30.0, seed: int = 0, block=None, bvals=None, bvecs=None) -> Phantom:
    """DKI phantom from ``phantoms/dki.json``: tissue blocks with known diffusion and kurtosis tensors.

    Each region is a mixture of Gaussian compartments; its tensors come from
    :func:`qmri.models.dki.tensors_from_compartments` and its signal is the DKI equation with
    those tensors (so the DKI model is exact on the noise-free data).

    Parameters
    ----------
    snr : float
        S0 / sigma of the Rician noise (``inf`` for noise-free).
    seed : int
        Seed of the noise generator.
    block : tuple of 3 int, optional
        Voxels per region (default 8×8×2 from the definition).
    bvals, bvecs : array_like, optional
        Acquisition (s/mm², unit vectors); default 3 b=0 + 30 directions at b=1000 and at 2000.

    Returns
    -------
    Phantom
        ``truth`` holds S0, MD, AD, RD (mm²/s), FA, MK, AK, RK, MKT, KFA (computed from the true
        tensors with the same formulas as the fit, no kurtosis clipping); ``acquisition`` holds
        ``bvals``, ``bvecs``, ``dt`` and ``kt`` per region.

    Raises
    ------
    QMRIInputError
        SNR not positive, bad block size or acquisition.
    """
    from qmri.models.dki import DKI, design_matrix, tensor_maps, tensors_from_compartments

    d = load_definition("dki")
    shape, labels, mask = _checked_layout(d, snr, block)
    if bvals is None:
        pr = d["protocol"]
        bvals, bvecs = dki_protocol(pr["n_b0"], pr["shells"], pr["directions_per_shell"])
    model = DKI(bvals, bvecs)  # validates the acquisition
    betas = []
    for reg in d["regions"]:
        comps = reg["compartments"]
        dt, kt = tensors_from_compartments([c["f"] for c in comps], [c["evals"] for c in comps],
                                           [c["direction"] for c in comps])
        md = (dt[0] + dt[2] + dt[5]) / 3.0 * 1e3
        betas.append(np.r_[dt * 1e3, kt * md * md, np.log(d["S0"])])
        reg["dt"], reg["kt"] = dt.tolist(), kt.tolist()
    betas = np.array(betas)
    tm = tensor_maps(betas, min_kurtosis=-np.inf, max_kurtosis=np.inf)
    truth = {k: np.full(shape, np.nan) for k in ("S0", "MD", "AD", "RD", "FA", "MK", "AK", "RK", "MKT", "KFA")}
    X = design_matrix(model.bvals, model.bvecs)
    clean = np.zeros(shape + (X.shape[0],))
    for r in range(len(d["regions"])):
        sel = labels == r + 1
        for k in truth:
            truth[k][sel] = tm[k][r]
        clean[sel] = np.exp(X @ betas[r])
    rng = np.random.default_rng(seed)
    data = clean if np.isinf(snr) else add_rician_noise(clean, d["S0"] / snr, rng)
    units = {"S0": "a.u.", "MD": "mm2/s", "AD": "mm2/s", "RD": "mm2/s"}
    return Phantom(name="dki", data=data, mask=mask, truth=truth, units={k: units.get(k, "") for k in truth},
                   labels=labels, regions=d["regions"],
                   acquisition={"bvals": model.bvals.tolist(), "bvecs": model.bvecs.tolist(), "snr": snr,
                                "seed": seed, "source": d["source"]})


def bvec_text(bvecs) -> str:
    """FSL ``.bvec`` text (3 rows) for (n, 3) vectors."""
    g = np.asarray(bvecs, dtype=np.float64)
    return "\n".join(" ".join(f"{v:.8f}" for v in g[:, j]) for j in range(3)) + "\n"


def dce_phantom(*, snr: float = 20.0, seed: int = 0, block=None, times=None, vp=None) -> Phantom:
    """DCE phantom from ``phantoms/dce.json``: a QIBA-like grid of (Ktrans, ve) patches.

    Patches of ``block`` voxels lie on an x–y grid (x: Ktrans, y: ve); the grid is repeated along
    z once per plasma volume ``vp`` (vp = 0: standard Tofts; vp > 0: extended Tofts). The tissue
    concentration follows the extended Tofts model with a Parker AIF (plasma, Hct 0.42) that
    starts at the injection time; the SPGR signal (T10, TR, FA, r1, M0 of the definition) gets
    Rician noise of ``sigma = S_baseline / snr`` and the concentration is recomputed from the
    noisy signal (:func:`qmri.models.relaxation.signal_to_concentration`), as an analysis would.

    Parameters
    ----------
    snr : float
        Pre-contrast (baseline) signal / sigma of the Rician noise (``inf`` for noise-free).
    seed : int
        Seed of the noise generator.
    block : tuple of 3 int, optional
        Voxels per patch along x, y and z (default 5 × 5 × 1).
    times : array_like, optional
        Frame times in s (default 150 frames every 2 s).
    vp : sequence of float, optional
        Plasma volumes, one z-block each (default 0, 0.02, 0.05).

    Returns
    -------
    Phantom
        ``data``: signal (X, Y, Z, n_frames) in a.u.; ``acquisition`` holds ``times`` (s), ``aif``
        (Cp, mM), ``concentration`` (mM, same shape as data), T10, TR, FA, r1, baseline frames;
        truth maps ``Ktrans`` (1/min), ``ve``, ``vp``, ``kep`` (1/min).

    Raises
    ------
    QMRIInputError
        SNR not positive, bad block, times or vp.
    """
    from qmri.models.aif import parker
    from qmri.models.dce import DCE
    from qmri.models.relaxation import concentration_to_signal, signal_to_concentration

    d = load_definition("dce")
    if not snr > 0:
        raise QMRIInputError(f"SNR must be positive, got {snr}")
    block = tuple(int(b) for b in (d["block"] if block is None else block))
    if len(block) != 3 or min(block) < 1:
        raise QMRIInputError(f"block must be 3 positive integers, got {block}")
    t = (np.arange(d["n_frames"]) * d["frame_interval"] if times is None
         else np.asarray(times, dtype=np.float64))
    vps = [float(v) for v in (d["vp"] if vp is None else vp)]
    if not vps or min(vps) < 0 or max(vps) >= 1:
        raise QMRIInputError(f"vp values must be in [0, 1), got {vps}")
    kt, ve = d["Ktrans"], d["ve"]
    bx, by, bz = block
    shape = (len(kt) * bx, len(ve) * by, len(vps) * bz)
    labels = np.zeros(shape, dtype=np.int16)
    truth = {k: np.full(shape, np.nan) for k in ("Ktrans", "ve", "vp", "kep")}
    regions = []
    for a, K in enumerate(kt):
        for b, v in enumerate(ve):
            for c, p in enumerate(vps):
                sl = (slice(a * bx, (a + 1) * bx), slice(b * by, (b + 1) * by), slice(c * bz, (c + 1) * bz))
                regions.append({"Ktrans": K, "ve": v, "vp": p})
                labels[sl] = len(regions)
                truth["Ktrans"][sl], truth["ve"][sl], truth["vp"][sl], truth["kep"][sl] = K, v, p, K / v
    mask = labels > 0
    cp = parker(t, hct=d["hct"], delay=d["injection_time"])
    model = DCE(t, cp, "etm")
    conc = np.zeros(shape + (t.size,))
    conc[mask] = model.concentration({k: truth[k][mask] for k in ("Ktrans", "ve", "vp")})
    acq = dict(t10=d["T10"], r1=d["r1"], tr=d["TR"], fa=d["FA"])
    clean = concentration_to_signal(conc, M0=d["M0"], **acq)
    rng = np.random.default_rng(seed)
    s0 = float(clean[mask][0, 0])
    data = clean if np.isinf(snr) else add_rician_noise(clean, s0 / snr, rng)
    measured = signal_to_concentration(data, n_baseline=d["n_baseline"], **acq)
    measured[~mask] = 0.0
    return Phantom(name="dce", data=data, mask=mask, truth=truth,
                   units={k: d["units"][k] for k in truth}, labels=labels, regions=regions,
                   acquisition={"times": t.tolist(), "aif": cp.tolist(), "concentration": measured,
                                "T10": d["T10"], "TR": d["TR"], "FA": d["FA"], "r1": d["r1"],
                                "n_baseline": d["n_baseline"], "hct": d["hct"],
                                "injection_time": d["injection_time"], "snr": snr, "seed": seed,
                                "source": d["source"]})
