"""IVIM speed and accuracy: qmri (lsq, segmented) vs dipy IvimModel (trr) vs scipy curve_fit per voxel.

All methods fit the same phantom (10 OSIPI tissues, 100,000 voxels, 13 b-values 0–1000 s/mm²,
Rician noise at SNR 30). qmri fits every voxel (warm: Numba compiled first); dipy and scipy fit a
random subset (their voxels/s is extrapolated from it). Accuracy (NRMSE and bias of f, D, D*
against the truth) is reported on that same subset for every method, so the comparison is paired.

Whole command (``--whole N``, default 600,000 voxels): ``qmri ivim`` (lsq, every map written as
.nii.gz with sidecars) on a phantom series of that size, best of ``--repeats`` warm runs, with its
peak memory: what a user times (start-up, reading, fit, writing).

Run:  python benchmarks/ivim.py [--voxels-per-region 10000] [--subset 2000] [--threads N] [--whole 600000]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxels-per-region", type=int, default=10_000)
    ap.add_argument("--subset", type=int, default=2000, help="voxels fitted by dipy and scipy")
    ap.add_argument("--snr", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=None, help="Numba threads (default: all cores)")
    ap.add_argument("--repeats", type=int, default=3, help="qmri timings: best of this many warm runs")
    ap.add_argument("--whole", type=int, default=600_000, help="voxels of the whole-command series (0: skip)")
    args = ap.parse_args(argv)
    if args.whole:
        whole_command(args)

    import numba

    from qmri.models import IVIM
    from qmri.simulate import nrmse_bias

    if args.threads:
        numba.set_num_threads(args.threads)
    side = int(round(np.sqrt(args.voxels_per_region)))
    ph = IVIM.phantom(snr=args.snr, seed=42, block=(side, side, 1))
    Y = ph.data[ph.mask]
    truth = {k: v[ph.mask] for k, v in ph.truth.items()}
    b = np.asarray(ph.acquisition["bvals"])
    n = len(Y)
    rng = np.random.default_rng(0)
    sub = np.sort(rng.choice(n, size=min(args.subset, n), replace=False))
    print(f"phantom: {n} voxels, {len(ph.regions)} tissues, {b.size} b-values, SNR {args.snr:g} (Rician); "
          f"Numba threads {numba.get_num_threads()}; dipy/scipy subset {len(sub)} voxels")

    rows = []  # (name, vox/s, {param: (nrmse, bias)} on subset)
    model = IVIM(b)
    full = {}
    for method in ("lsq", "segmented"):
        model.fit(Y[:64], method=method)  # compile
        best = np.inf
        for _ in range(args.repeats):
            t = time.perf_counter()
            maps = model.fit(Y, method=method)
            best = min(best, time.perf_counter() - t)
        est = {k: maps[k] for k in ("f", "D", "Dstar")}
        rows.append((f"qmri {method}", n / best, {k: nrmse_bias(est[k][sub], truth[k][sub], slice(None)) for k in est}))
        full[method] = {k: nrmse_bias(est[k], truth[k], slice(None)) for k in est}

    # dipy IvimModel, two-stage TRR fit, with OSIPI bounds (dipy's default caps f at 0.2)
    from dipy.core.gradients import gradient_table
    from dipy.reconst.ivim import IvimModel

    bvecs = np.tile([1.0, 0.0, 0.0], (b.size, 1))
    bvecs[b == 0] = 0
    gtab = gradient_table(b, bvecs=bvecs, b0_threshold=0)
    dmodel = IvimModel(gtab, fit_method="trr", bounds=([0, 0, 0.005, 0], [np.inf, 1, 0.2, 0.005]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        dfit = dmodel.fit(Y[sub])
        dt = time.perf_counter() - t
    dest = {"f": dfit.perfusion_fraction, "D": dfit.D, "Dstar": dfit.D_star}
    rows.append(("dipy IvimModel trr", len(sub) / dt,
                 {k: nrmse_bias(np.asarray(dest[k]), truth[k][sub], slice(None)) for k in dest}))

    # scipy curve_fit per voxel (bounded TRF), OSIPI bounds and initial guess, normalised signal
    from scipy.optimize import curve_fit

    def biexp(bb, s0, f, d, ds):
        return s0 * (f * np.exp(-bb * ds) + (1 - f) * np.exp(-bb * d))

    lo, hi = [0.5, 0, 0, 0.005], [2.0, 1, 0.005, 0.2]
    sest = np.full((len(sub), 4), np.nan)
    t = time.perf_counter()
    for i, v in enumerate(sub):
        y = Y[v] / Y[v][b == b.min()].mean()
        try:
            sest[i] = curve_fit(biexp, b, y, p0=[1.0, 0.1, 0.001, 0.01], bounds=(lo, hi))[0]
        except (RuntimeError, ValueError):
            pass
    dt = time.perf_counter() - t
    scipy_est = {"f": sest[:, 1], "D": sest[:, 2], "Dstar": sest[:, 3]}
    rows.append(("scipy curve_fit (trf)", len(sub) / dt,
                 {k: nrmse_bias(scipy_est[k], truth[k][sub], slice(None)) for k in scipy_est}))

    params = ("f", "D", "Dstar")
    head = "| method | voxels/s | " + " | ".join(f"NRMSE {p}" for p in params) + " | " + \
           " | ".join(f"bias {p}" for p in params) + " |"
    print()
    print(head)
    print("|" + "---|" * (2 + 2 * len(params)))
    for name, rate, acc in rows:
        print(f"| {name} | {rate:,.0f} | " + " | ".join(f"{acc[p][0]:.3f}" for p in params) + " | " +
              " | ".join(f"{100 * acc[p][1]:+.1f}%" for p in params) + " |")
    print()
    lsq_rate = rows[0][1]
    for name, rate, _ in rows[2:]:
        print(f"qmri lsq is {lsq_rate / rate:,.0f}x faster than {name}")
    print(f"qmri segmented is {rows[1][1] / rows[2][1]:,.0f}x faster than dipy, "
          f"{rows[1][1] / rows[3][1]:,.0f}x faster than scipy")
    scipy_acc = rows[3][2]
    for p in params:
        rel = rows[0][2][p][0] / scipy_acc[p][0] - 1
        print(f"NRMSE {p}: qmri lsq vs scipy {100 * rel:+.1f}%")
    print("qmri on all voxels: " + "; ".join(
        f"{m}: " + ", ".join(f"NRMSE {p} {full[m][p][0]:.3f}" for p in params) for m in full))


def whole_command(args):
    """``qmri ivim`` on a series of ``args.whole`` voxels: seconds, voxels/s, peak RSS."""
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from commands import best_of, qmri_script

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        side = max(1, int(round((args.whole / 10 / 10) ** 0.5)))  # 10 tissues, 10 slices
        best_of([qmri_script(), "phantom", "ivim", "--out-dir", tmp / "ph", "--snr", str(args.snr),
                 "--block", side, side, 10], 1, warm=False)
        cmd = [qmri_script(), "ivim", tmp / "ph" / "ivim.nii.gz", "--bval", tmp / "ph" / "ivim.bval", "--mask",
               tmp / "ph" / "mask.nii.gz", "--out-dir", tmp / "fit", "--force", "--quiet"]
        if args.threads:
            cmd += ["--threads", args.threads]
        n = 10 * side * side * 10
        s, rss = best_of(cmd, args.repeats)
    print(f"whole command: qmri ivim (lsq, all maps) on {n:,} voxels x 13 b-values (.nii.gz): {s:.2f} s, "
          f"{n / s:,.0f} voxels/s, peak RSS {rss:.0f} MB (best of {args.repeats} warm runs)\n", flush=True)


if __name__ == "__main__":
    main()
