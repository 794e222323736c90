"""The DKI phantom: tissue blocks whose signal is the DKI equation of known tensors.

Each region of ``phantoms/dki.json`` is a mixture of non-exchanging Gaussian compartments; its
diffusion and kurtosis tensors follow from :func:`~qmri.models.diffusion.dki.design.tensors_from_compartments`
(cumulant expansion to 4th order), so the DKI model is exact on the noise-free data.
"""

from __future__ import annotations

import numpy as np

from qmri.models.diffusion.dki.design import design_matrix, hemisphere, tensors_from_compartments
from qmri.models.diffusion.dki.metrics import MAP_UNITS, tensor_maps
from qmri.models.diffusion.dki.tensor import DKI
from qmri.simulate import (
    Phantom,
    add_rician_noise,
    block_layout,
    bval_text,
    bvec_text,
    check_snr,
    checked_block,
    load_definition,
)


def dki_protocol(n_b0: int = 3, shells=(1000.0, 2000.0), directions_per_shell: int = 30):
    """A multi-shell DKI protocol: ``n_b0`` b=0 volumes, then ``directions_per_shell`` near-uniform
    directions (Fibonacci half-sphere, rotated differently on each shell) per shell.

    Returns
    -------
    bvals : ndarray (n,), s/mm²
    bvecs : ndarray (n, 3), unit vectors (zeros for b=0)
    """
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
    :func:`~qmri.models.diffusion.dki.design.tensors_from_compartments` and its signal is the DKI equation with
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
    d = load_definition("dki")
    snr = check_snr(snr)
    shape, labels = block_layout(len(d["regions"]), checked_block(block, d["block"]))
    mask = labels > 0
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
    return Phantom(name="dki", data=data, mask=mask, truth=truth, units={k: MAP_UNITS[k] for k in truth},
                   labels=labels, regions=d["regions"],
                   acquisition={"bvals": model.bvals.tolist(), "bvecs": model.bvecs.tolist(), "snr": snr,
                                "seed": seed, "source": d["source"]},
                   files={"dki.bval": bval_text(model.bvals), "dki.bvec": bvec_text(model.bvecs)},
                   fit_hint="qmri dki {out}/dki.nii.gz --bval {out}/dki.bval --bvec {out}/dki.bvec "
                            "--mask {out}/mask.nii.gz --out-dir FIT")
