"""The DCE phantom: a QIBA-like grid of (Ktrans, ve, vp) patches with a Parker AIF (``phantoms/dce.json``)."""

from __future__ import annotations

import numpy as np

from qmri.errors import QMRIInputError
from qmri.models.dce.aif import population_samples
from qmri.models.dce.model import DCE
from qmri.models.dce.relaxation import concentration_to_signal, signal_to_concentration
from qmri.simulate import Phantom, add_rician_noise, check_snr, checked_block, load_definition


def dce_phantom(*, snr: float = 20.0, seed: int = 0, block=None, times=None, vp=None) -> Phantom:
    """DCE phantom from ``phantoms/dce.json``: a QIBA-like grid of (Ktrans, ve) patches.

    Patches of ``block`` voxels lie on an x–y grid (x: Ktrans, y: ve); the grid is repeated along
    z once per plasma volume ``vp`` (vp = 0: standard Tofts; vp > 0: extended Tofts). The tissue
    concentration follows the extended Tofts model with a Parker AIF (plasma, Hct 0.42) that
    starts at the injection time, on its own fine grid
    (:func:`qmri.models.dce.aif.population_samples`); the SPGR signal (T10, TR, FA, r1, M0 of the definition) gets
    Rician noise of ``sigma = S_baseline / snr`` and the concentration is recomputed from the
    noisy signal (:func:`qmri.models.dce.relaxation.signal_to_concentration`), as an analysis would.

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
        ``data``: signal (X, Y, Z, n_frames) in a.u.; ``images["dce_conc"]``: the concentration
        (mM, same shape as data); ``acquisition`` holds ``times`` (s), ``aif_times`` (s) and ``aif``
        (Cp on its own grid, mM), T10, TR, FA,
        r1, baseline frames; truth maps ``Ktrans`` (1/min), ``ve``, ``vp``, ``kep`` (1/min);
        ``files``: ``times.txt`` and ``aif.csv``.

    Raises
    ------
    QMRIInputError
        SNR not positive, bad block, times or vp.
    """
    d = load_definition("dce")
    snr = check_snr(snr)
    block = checked_block(block, d["block"])
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
    ta, cp = population_samples("parker", t, hct=d["hct"], delay=d["injection_time"])
    model = DCE(t, cp, "etm", aif_times=ta)
    conc = np.zeros(shape + (t.size,))
    conc[mask] = model.concentration({k: truth[k][mask] for k in ("Ktrans", "ve", "vp")})
    acq = dict(t10=d["T10"], r1=d["r1"], tr=d["TR"], fa=d["FA"])
    clean = concentration_to_signal(conc, M0=d["M0"], **acq)
    rng = np.random.default_rng(seed)
    s0 = float(clean[mask][0, 0])
    data = clean if np.isinf(snr) else add_rician_noise(clean, s0 / snr, rng)
    measured = signal_to_concentration(data, n_baseline=d["n_baseline"], **acq)
    measured[~mask] = 0.0
    files = {"times.txt": "\n".join(f"{v:g}" for v in t) + "\n",
             "aif.csv": "time_s,cp_mM\n" + "".join(f"{a:.8g},{b:.8g}\n" for a, b in zip(ta, cp))}
    hint = (f"qmri dce {{out}}/dce.nii.gz --time {{out}}/times.txt --model etm --aif {{out}}/aif.csv "
            f"--t10 {d['T10']:g} --fa {d['FA']:g} --tr {d['TR']:g} --r1 {d['r1']:g} --baseline {d['n_baseline']} "
            "--mask {out}/mask.nii.gz --out-dir FIT")
    return Phantom(name="dce", data=data, mask=mask, truth=truth,
                   units={k: d["units"][k] for k in truth}, labels=labels, regions=regions,
                   acquisition={"times": t.tolist(), "aif_times": ta.tolist(), "aif": cp.tolist(),
                                "T10": d["T10"], "TR": d["TR"], "FA": d["FA"], "r1": d["r1"],
                                "n_baseline": d["n_baseline"], "hct": d["hct"],
                                "injection_time": d["injection_time"], "snr": snr, "seed": seed,
                                "source": d["source"]},
                   images={"dce_conc": measured}, files=files, fit_hint=hint)
