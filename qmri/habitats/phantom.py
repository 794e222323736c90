"""The habitat phantom: tumours of different shapes with known sub-regions, as IVIM and DCE series.

Each subject is one tumour (ellipsoid, lobulated, irregular or elongated, of about ``voxels``
voxels on the diffusion grid) split into three contiguous sub-regions by depth below its surface:
a necrotic core (the deepest part) and, around it, hypercellular tumour on one side and well-perfused stroma on the other, with
fractions drawn per subject. Every parameter varies inside its region (a smooth log-normal field),
D and Ktrans carry a per-subject scale (calibration differences between scans), and the two series
are simulated on different grids: the diffusion series (IVIM, Rician noise) on the ROI's grid, the
DCE series (Tofts, Parker AIF, SPGR signal, Rician noise) on a grid ``in_plane_factor`` times
coarser in-plane whose voxels average the concentration of the diffusion voxels they cover
(partial volume). Values and sources: ``phantoms/habitat.json``.

This module simulates series with the model declarations (:mod:`qmri.models`); the habitat analysis
itself (the other modules of :mod:`qmri.habitats`) never imports it nor any fitting code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qmri import io
from qmri.errors import QMRIInputError
from qmri.models.dce.aif import parker
from qmri.models.dce.model import DCE
from qmri.models.dce.relaxation import concentration_to_signal, spgr_signal
from qmri.models.diffusion.ivim import IVIM
from qmri.options import Option
from qmri.resultset import ResultSet, refuse_existing
from qmri.simulate import add_rician_noise, bval_text, load_definition

#: Files written per subject folder by :func:`write_habitat_phantom`.
SUBJECT_FILES = ("dwi.nii.gz", "dwi.bval", "roi.nii.gz", "labels.nii.gz", "truth_D.nii.gz", "truth_f.nii.gz",
                 "truth_Ktrans.nii.gz", "dce.nii.gz", "dce_mask.nii.gz", "dce_times.txt", "dce_aif.csv")
#: Truth maps written (on the diffusion grid, NaN outside the ROI).
TRUTH_WRITTEN = ("D", "f", "Ktrans")


@dataclass
class HabitatSubject:
    """One simulated subject.

    Attributes
    ----------
    id : str
        ``sub-01``, ``sub-02``...
    shape_name : str
        Tumour shape (``ellipsoid``, ``lobulated``, ``irregular``, ``elongated``).
    roi : ndarray of bool (X, Y, Z)
        Tumour mask on the diffusion grid.
    labels : ndarray of uint8 (X, Y, Z)
        True sub-region, 1-based in the order of the definition's ``regions`` (0 outside the ROI).
    truth : dict of str to ndarray (X, Y, Z)
        True parameters (``D``, ``Dstar`` mm²/s, ``f``, ``Ktrans`` 1/min, ``ve``), NaN outside the ROI.
    dwi : ndarray (X, Y, Z, n_b)
        Diffusion series (a.u.), b-values ``bvals`` (s/mm²), voxel-to-world ``dwi_affine``.
    dce : ndarray (x, y, Z, n_frames)
        DCE SPGR signal (a.u.) on its own grid ``dce_affine``; ``dce_mask`` the voxels worth fitting
        (those covering the tumour, dilated by one voxel).
    times, aif : ndarray (n_frames,)
        Frame times (s) and plasma AIF (mM).
    dce_acquisition : dict
        ``T10`` (s), ``TR`` (s), ``FA`` (deg), ``r1`` (1/s/mM), ``n_baseline``.
    scale : dict of str to float
        Per-subject factors applied to D and Ktrans.
    fractions : dict of str to float
        True fraction of the ROI in each sub-region.
    """

    id: str
    shape_name: str
    roi: np.ndarray
    labels: np.ndarray
    truth: dict
    dwi: np.ndarray
    dwi_affine: np.ndarray
    bvals: np.ndarray
    dce: np.ndarray
    dce_affine: np.ndarray
    dce_mask: np.ndarray
    times: np.ndarray
    aif: np.ndarray
    dce_acquisition: dict
    scale: dict
    fractions: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-ready description (no arrays)."""
        return {"id": self.id, "shape": self.shape_name, "roi_voxels": int(self.roi.sum()),
                "dwi_grid": list(self.roi.shape), "dce_grid": list(self.dce.shape[:3]),
                "scale": self.scale, "fractions": self.fractions}


def definition() -> dict:
    """``phantoms/habitat.json``."""
    return load_definition("habitat")


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------
def _fourier_field(rng, n_modes: int = 12, wavenumber: float = 2.5):
    """A smooth random function of normalised coordinates u (…, 3), values roughly in [-1, 1]."""
    k = rng.normal(size=(n_modes, 3))
    k *= wavenumber / np.linalg.norm(k, axis=1, keepdims=True) * rng.uniform(0.6, 1.4, (n_modes, 1))
    phase = rng.uniform(0, 2 * np.pi, n_modes)
    amp = rng.normal(size=n_modes) / np.sqrt(n_modes / 2)

    def g(u):
        return np.tanh(np.cos(u @ k.T + phase) @ amp)

    return g


def _shape_radius(kind: str, rng):
    """``rho(u)``: <= 1 inside the tumour, for normalised coordinates u (…, 3)."""
    wobble = _fourier_field(rng, wavenumber=3.0)
    if kind == "ellipsoid":
        axes = np.array([1.15, 1.0, 0.85])
        return lambda u: np.linalg.norm(u / axes, axis=-1) * (1 + 0.05 * wobble(u))
    if kind == "elongated":
        axes = np.array([1.55, 0.85, 0.75])
        return lambda u: np.linalg.norm(u / axes, axis=-1) * (1 + 0.05 * wobble(u))
    if kind == "lobulated":
        d = rng.normal(size=(3, 3))
        centres = 0.5 * d / np.linalg.norm(d, axis=1, keepdims=True) * np.array([1.0, 1.0, 0.7])
        return lambda u: np.min([np.linalg.norm((u - c) / 0.72, axis=-1) for c in centres], axis=0) \
            * (1 + 0.05 * wobble(u))
    if kind == "irregular":
        bumps = _fourier_field(rng, wavenumber=2.0)
        axes = np.array([1.1, 1.0, 0.9])
        return lambda u: np.linalg.norm(u / axes, axis=-1) * (1 + 0.22 * bumps(u) + 0.05 * wobble(u))
    raise QMRIInputError(f"unknown tumour shape {kind!r}")


def tumour(kind: str, n_voxels: int, voxel_mm, margin: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """A tumour of about ``n_voxels`` voxels of size ``voxel_mm`` on a grid cropped to it plus ``margin``.

    Returns ``(inside (X, Y, Z) bool, coordinates in mm (X, Y, Z, 3) relative to the centre / R)``;
    X and Y are even (the DCE grid groups voxels in pairs in-plane).
    """
    from scipy import ndimage

    vox = np.asarray(voxel_mm, dtype=np.float64)
    rho = _shape_radius(kind, rng)
    radius = (3 * n_voxels * np.prod(vox) / (4 * np.pi)) ** (1 / 3)
    for _ in range(4):
        half = np.ceil(1.8 * radius / vox).astype(int)
        axes = [(np.arange(-h, h + 1)) * v / radius for h, v in zip(half, vox)]
        u = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
        inside = rho(u) <= 1.0
        lab, n = ndimage.label(inside)
        if n > 1:
            sizes = ndimage.sum(inside, lab, range(1, n + 1))
            inside = lab == 1 + int(np.argmax(sizes))
        inside = ndimage.binary_fill_holes(inside)
        count = int(inside.sum())
        if abs(count - n_voxels) <= 0.02 * n_voxels:
            break
        radius *= (n_voxels / max(count, 1)) ** (1 / 3)
    idx = np.argwhere(inside)
    lo = idx.min(axis=0) - margin
    hi = idx.max(axis=0) + margin + 1
    for ax in (0, 1):
        if (hi[ax] - lo[ax]) % 2:
            hi[ax] += 1
    pad = [(max(0, -lo[a]), max(0, hi[a] - inside.shape[a])) for a in range(3)]
    inside = np.pad(inside, pad)
    u = np.pad(u, pad + [(0, 0)], mode="edge")
    lo = lo + np.array([p[0] for p in pad])
    hi = hi + np.array([p[0] for p in pad])
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    return inside[sl], u[sl]


def subregions(inside, u, voxel_mm, fractions: tuple[float, float], rng) -> np.ndarray:
    """Labels 3 (core: the deepest ``fractions[1]`` of the tumour), 1 (``fractions[0]`` of the tumour on
    one side of a random plane through the rest) and 2 (the remainder).

    Depth is the distance to the tumour surface (mm) over its maximum; depth and plane are perturbed
    by smooth random fields so that the boundaries are irregular. Each sub-region is a compact
    blob many voxels thick, as habitats are (a thin shell would be lost to the partial volume of a
    coarse DCE grid).
    """
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(inside, sampling=voxel_mm)
    rel = depth / depth.max() + 0.1 * _fourier_field(rng, wavenumber=3.0)(u)
    core = inside & (rel > np.quantile(rel[inside], 1.0 - fractions[1]))
    normal = np.append(rng.normal(size=2), 0.3 * rng.normal())
    side = u @ (normal / np.linalg.norm(normal)) + 0.25 * _fourier_field(rng, wavenumber=2.0)(u)
    rest = inside & ~core
    cut = np.quantile(side[rest], fractions[0] / (1.0 - fractions[1]))
    labels = np.zeros(inside.shape, dtype=np.uint8)
    labels[rest] = 2
    labels[rest & (side <= cut)] = 1
    labels[core] = 3
    return labels


def smooth_normal(shape, sigma_vox, rng) -> np.ndarray:
    """A smooth Gaussian random field with mean 0 and standard deviation 1 (Gaussian-filtered noise)."""
    from scipy import ndimage

    z = ndimage.gaussian_filter(rng.normal(size=shape), sigma_vox, mode="reflect")
    return (z - z.mean()) / z.std()


# ---------------------------------------------------------------------------------------------
# Series
# ---------------------------------------------------------------------------------------------
def habitat_subject(index: int, *, voxels: int | None = None, seed: int = 0, d: dict | None = None,
                    repeat: int = 0, series: bool = True) -> HabitatSubject:
    """Simulate subject number ``index`` (0-based) of the phantom (deterministic in ``seed``, ``index``).

    ``repeat`` > 0 simulates a repeat scan of the same subject: the same tumour and parameters, new
    noise (seeded by ``repeat``) and the DCE grid shifted by up to half a diffusion voxel in each
    in-plane direction (a small misregistration between the series). ``series=False`` skips the
    IVIM and DCE series (``dwi`` and ``dce`` are then empty; the truth is the same).

    Raises
    ------
    QMRIInputError
        ``voxels`` below 200.
    """
    d = definition() if d is None else d
    n_vox = int(d["voxels"] if voxels is None else voxels)
    if n_vox < 200:
        raise QMRIInputError(f"a habitat phantom tumour needs at least 200 voxels, got {n_vox}")
    rng = np.random.default_rng([int(seed), int(index)])
    kind = d["shapes"][index % len(d["shapes"])]
    vox = np.asarray(d["dwi"]["voxel_mm"], dtype=np.float64)
    inside, u = tumour(kind, n_vox, vox, int(d["margin_voxels"]), rng)
    names = [r["name"] for r in d["regions"]]
    lo_hi = d["region_fractions"]
    fr = (rng.uniform(*lo_hi[names[0]]), rng.uniform(*lo_hi[names[2]]))
    labels = subregions(inside, u, vox, fr, rng)
    shape = inside.shape

    # parameters: region value x per-subject scale x smooth log-normal heterogeneity
    scale = {k: float(np.exp(rng.uniform(-a, a))) for k, a in d["subject_scale"].items()}
    h = float(d["heterogeneity"])
    sigma_vox = float(d["correlation_mm"]) / vox
    params = {}
    for p in ("D", "f", "Dstar", "Ktrans", "ve"):
        base = np.full(shape, float(d["background"][p]))
        for r, reg in enumerate(d["regions"]):
            base[labels == r + 1] = reg[p]
        params[p] = base * scale.get(p, 1.0) * np.exp(h * smooth_normal(shape, sigma_vox, rng) - h * h / 2)
    params["f"] = np.clip(params["f"], 0.0, 0.95)
    params["ve"] = np.clip(params["ve"], 0.02, 0.95)

    truth = {k: np.where(inside, v, np.nan) for k, v in params.items()}
    fractions = {names[r]: float(np.mean(labels[inside] == r + 1)) for r in range(len(names))}
    shift = np.zeros(3)
    if repeat:
        rng = np.random.default_rng([int(seed), int(index), int(repeat)])
        shift = np.append(rng.uniform(-0.5, 0.5, 2) * vox[:2], 0.0)
    if not series:
        empty = np.zeros(shape + (0,))
        return HabitatSubject(id=f"sub-{index + 1:02d}", shape_name=kind, roi=inside, labels=labels, truth=truth,
                              dwi=empty, dwi_affine=np.eye(4), bvals=np.zeros(0), dce=empty, dce_affine=np.eye(4),
                              dce_mask=np.zeros(shape, bool), times=np.zeros(0), aif=np.zeros(0),
                              dce_acquisition={}, scale=scale, fractions=fractions)

    # diffusion series on the ROI's grid
    w = d["dwi"]
    bvals = np.asarray(w["bvals"], dtype=np.float64)
    clean = IVIM(bvals).signal({"S0": w["S0"], "f": params["f"], "D": params["D"], "Dstar": params["Dstar"]})
    dwi = add_rician_noise(clean, w["S0"] / w["snr"], rng)
    origin = -vox * (np.array(shape) - 1) / 2
    dwi_affine = np.diag(np.append(vox, 1.0))
    dwi_affine[:3, 3] = origin

    # DCE on a grid `m` times coarser in-plane: the concentration of each DCE voxel is the mean over
    # the diffusion voxels it covers (partial volume), then SPGR signal and Rician noise
    c = d["dce"]
    m = int(c["in_plane_factor"])
    t = np.arange(int(c["n_frames"])) * float(c["frame_interval"])
    cp = parker(t, hct=c["hct"], delay=c["injection_time"])
    conc = DCE(t, cp, "tofts").concentration({"Ktrans": params["Ktrans"], "ve": params["ve"]})
    X, Y, Z = shape
    conc = conc.reshape(X // m, m, Y // m, m, Z, t.size).mean(axis=(1, 3))
    acq = dict(t10=c["T10"], r1=c["r1"], tr=c["TR"], fa=c["FA"])
    sig = concentration_to_signal(conc, M0=c["M0"], **acq)
    s_base = float(spgr_signal(c["M0"], c["T10"], c["FA"], c["TR"]))
    dce = add_rician_noise(sig, s_base / c["snr"], rng)
    dce_affine = np.diag([m * vox[0], m * vox[1], vox[2], 1.0])
    dce_affine[:3, 3] = origin + np.array([(m - 1) * vox[0] / 2, (m - 1) * vox[1] / 2, 0.0]) + shift
    covered = inside.reshape(X // m, m, Y // m, m, Z).any(axis=(1, 3))
    from scipy import ndimage

    dce_mask = ndimage.binary_dilation(covered, np.ones((3, 3, 3), bool))
    return HabitatSubject(id=f"sub-{index + 1:02d}", shape_name=kind, roi=inside, labels=labels, truth=truth,
                          dwi=dwi, dwi_affine=dwi_affine, bvals=bvals, dce=dce, dce_affine=dce_affine,
                          dce_mask=dce_mask, times=t, aif=cp,
                          dce_acquisition={"T10": c["T10"], "TR": c["TR"], "FA": c["FA"], "r1": c["r1"],
                                           "n_baseline": int(c["n_baseline"])},
                          scale=scale, fractions=fractions)


def habitat_phantom(subjects: int = 4, *, voxels: int | None = None, seed: int = 0) -> list[HabitatSubject]:
    """The phantom's subjects (see the module docstring).

    Parameters
    ----------
    subjects : int
        Number of subjects (>= 1); shapes cycle through the definition's ``shapes``.
    voxels : int, optional
        Tumour size in diffusion voxels (default the definition's, 6000).
    seed : int

    Raises
    ------
    QMRIInputError
        ``subjects`` < 1, ``voxels`` < 200.
    """
    if int(subjects) < 1:
        raise QMRIInputError(f"--subjects must be at least 1, got {subjects}")
    d = definition()
    return [habitat_subject(i, voxels=voxels, seed=seed, d=d) for i in range(int(subjects))]


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
def fit_commands(out_dir, subject: HabitatSubject) -> list[str]:
    """The ``qmri`` commands that fit a written subject into ``<out_dir>/fit/<id>/{ivim,dce}``."""
    s = Path(out_dir) / subject.id
    fit = Path(out_dir) / "fit" / subject.id
    a = subject.dce_acquisition
    return [f"qmri ivim {s}/dwi.nii.gz --bval {s}/dwi.bval --mask {s}/roi.nii.gz --out-dir {fit}/ivim",
            f"qmri dce {s}/dce.nii.gz --time {s}/dce_times.txt --aif {s}/dce_aif.csv --t10 {a['T10']:g} "
            f"--fa {a['FA']:g} --tr {a['TR']:g} --r1 {a['r1']:g} --baseline {a['n_baseline']} "
            f"--mask {s}/dce_mask.nii.gz --out-dir {fit}/dce"]


def cohort_rows(subjects) -> str:
    """``cohort.csv`` for ``qmri habitat --cohort``: maps read from the fit folders of :func:`fit_commands`."""
    lines = ["id,mask,D,f,Ktrans"]
    for s in subjects:
        lines.append(f"{s.id},{s.id}/roi.nii.gz,fit/{s.id}/ivim,fit/{s.id}/ivim,fit/{s.id}/dce")
    return "\n".join(lines) + "\n"


def planned_files(out_dir, n_subjects: int) -> list[Path]:
    """Every file :func:`write_habitat_phantom` writes."""
    out = Path(out_dir)
    paths = [out / "habitat_phantom.json", out / "cohort.csv"]
    for i in range(n_subjects):
        paths += [out / f"sub-{i + 1:02d}" / name for name in SUBJECT_FILES]
    return paths


def write_subject(out_dir, s: HabitatSubject, *, force: bool = False) -> None:
    """Write one subject's files (:data:`SUBJECT_FILES`) into ``<out_dir>/<id>/`` as one result set
    (:class:`qmri.resultset.ResultSet`: all of them or none).

    Raises
    ------
    OutputExistsError
        A target exists and ``force`` is False.
    """
    units = definition()["units"]
    with ResultSet(Path(out_dir) / s.id, SUBJECT_FILES, force=force) as rs:
        io.write_map(rs.path("dwi.nii.gz"), s.dwi, affine=s.dwi_affine)
        io.write_text(rs.path("dwi.bval"), bval_text(s.bvals))
        io.write_map(rs.path("roi.nii.gz"), s.roi, affine=s.dwi_affine, dtype=np.uint8, intent="tumour ROI")
        io.write_map(rs.path("labels.nii.gz"), s.labels, affine=s.dwi_affine, dtype=np.uint8,
                     intent="true sub-regions")
        for k in TRUTH_WRITTEN:
            io.write_map(rs.path(f"truth_{k}.nii.gz"), s.truth[k], affine=s.dwi_affine, intent=f"{k} ({units[k]})")
        io.write_map(rs.path("dce.nii.gz"), s.dce, affine=s.dce_affine)
        io.write_map(rs.path("dce_mask.nii.gz"), s.dce_mask, affine=s.dce_affine, dtype=np.uint8,
                     intent="DCE fit mask")
        io.write_text(rs.path("dce_times.txt"), "\n".join(f"{v:g}" for v in s.times) + "\n")
        io.write_text(rs.path("dce_aif.csv"),
                      "time_s,cp_mM\n" + "".join(f"{a:g},{b:.8g}\n" for a, b in zip(s.times, s.aif)))


def write_habitat_phantom(out_dir, *, subjects: int = 4, voxels: int | None = None, seed: int = 0,
                          force: bool = False) -> list[HabitatSubject]:
    """Simulate the phantom and write it: one folder per subject (:data:`SUBJECT_FILES`), the
    description ``habitat_phantom.json`` and ``cohort.csv`` (for ``qmri habitat --cohort`` once the
    series are fitted with :func:`fit_commands`).

    Raises
    ------
    OutputExistsError
        A target exists and ``force`` is False (nothing is written).
    QMRIInputError
        Bad ``subjects`` or ``voxels``.
    """
    if int(subjects) < 1:
        raise QMRIInputError(f"--subjects must be at least 1, got {subjects}")
    refuse_existing(planned_files(out_dir, int(subjects)), force)
    subs = habitat_phantom(subjects, voxels=voxels, seed=seed)
    d = definition()
    for s in subs:
        write_subject(out_dir, s, force=force)
    with ResultSet(out_dir, ["habitat_phantom.json", "cohort.csv"], force=force) as rs:
        io.write_json(rs.path("habitat_phantom.json"), {
            "name": d["name"], "description": d["description"], "source": d["source"], "units": d["units"],
            "regions": d["regions"], "labels": {str(i + 1): r["name"] for i, r in enumerate(d["regions"])},
            "seed": seed, "subjects": [s.summary() for s in subs], "dwi": d["dwi"], "dce": d["dce"]})
        io.write_text(rs.path("cohort.csv"), cohort_rows(subs))
    return subs


#: ``qmri phantom habitat`` (see :data:`qmri.cli.phantom.OTHER_PHANTOMS`).
PHANTOM_NAME = "habitat"
PHANTOM_HELP = "tumours with known sub-regions as IVIM and DCE series on different grids (habitat analysis)"
#: Its options besides ``--out-dir``, ``--seed`` and ``--force``.
PHANTOM_OPTIONS = (
    Option("subjects", "number of subjects (tumours), default 4", int, 4),
    Option("voxels", "tumour size in diffusion voxels (default 6000)", int, None),
)


def write_phantom(out_dir, *, seed: int = 0, force: bool = False, subjects: int = 4, voxels: int | None = None) -> str:
    """``qmri phantom habitat``: write the phantom; return what was written and how to fit it."""
    subs = write_habitat_phantom(out_dir, subjects=subjects, voxels=voxels, seed=seed, force=force)
    lines = [f"habitat phantom: {len(subs)} subject(s) written to {out_dir}"]
    for s in subs:
        fr = ", ".join(f"{k} {100 * v:.0f}%" for k, v in s.fractions.items())
        lines.append(f"  {s.id}: {s.shape_name}, {int(s.roi.sum())} ROI voxels on {s.roi.shape}, DCE grid "
                     f"{s.dce.shape[:3]}; D x{s.scale['D']:.2f}, Ktrans x{s.scale['Ktrans']:.2f}; {fr}")
    lines.append("fit each subject, then cluster (true labels: <subject>/labels.nii.gz):")
    for s in subs:
        lines += ["  " + c for c in fit_commands(out_dir, s)]
    lines.append(f"  qmri habitat --cohort {Path(out_dir) / 'cohort.csv'} --out-dir {Path(out_dir) / 'habitats'}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Outcome
# ---------------------------------------------------------------------------------------------
def expected_auc(risk) -> float:
    """The AUC that the true risk itself reaches on average over outcomes drawn from it: for subjects
    with true probabilities p_i, ``Σ_{i≠j} p_i (1 - p_j) [p_i > p_j] / Σ_{i≠j} p_i (1 - p_j)`` (ties
    count one half). No score can do better on average (the true risk orders subjects best)."""
    p = np.asarray(risk, dtype=np.float64)
    w = p[:, None] * (1 - p[None, :])
    np.fill_diagonal(w, 0.0)
    order = (p[:, None] > p[None, :]) + 0.5 * (p[:, None] == p[None, :])
    np.fill_diagonal(order, 0.0)
    return float((w * order).sum() / w.sum())


def draw_outcome(subjects, *, seed: int = 0, d: dict | None = None) -> dict:
    """A binary outcome for phantom subjects through a logistic link on a known habitat feature:
    ``logit P(y = 1) = intercept + slope_per_sd * (x - mean x) / sd x``, x the true fraction of the
    ROI in the definition's ``outcome.region`` (``phantoms/habitat.json``).

    Returns
    -------
    dict
        ``outcome`` (0/1 per subject), ``risk`` (true probability), ``feature`` (x), and the
        description: ``region``, ``intercept``, ``slope_per_sd``, ``best_auc_expected``
        (:func:`expected_auc`) and ``best_auc_realised`` (the AUC of the true risk on the outcome drawn).

    Raises
    ------
    QMRIInputError
        Fewer than 10 subjects.
    """
    from qmri.outcomestats import auc

    d = definition() if d is None else d
    o = d["outcome"]
    if len(subjects) < 10:
        raise QMRIInputError(f"an outcome needs at least 10 subjects, got {len(subjects)}")
    x = np.array([s.fractions[o["region"]] for s in subjects])
    z = (x - x.mean()) / x.std()
    risk = 1 / (1 + np.exp(-(o["intercept"] + o["slope_per_sd"] * z)))
    rng = np.random.default_rng([int(seed), 7919])
    y = (rng.uniform(size=x.size) < risk).astype(int)
    region = [r["name"] for r in d["regions"]].index(o["region"]) + 1
    return {"outcome": y, "risk": risk, "feature": x,
            "region": o["region"], "region_label": region, "link": o["description"],
            "intercept": o["intercept"], "slope_per_sd": o["slope_per_sd"],
            "feature_mean": float(x.mean()), "feature_sd": float(x.std()),
            "best_auc_expected": expected_auc(risk), "best_auc_realised": auc(y, risk),
            "prevalence": float(y.mean())}
