"""DCE benchmark: qmri (batched Numba LM) vs scipy ``curve_fit`` per voxel, Tofts and extended Tofts.

Both fit the same phantom: ``qmri.models.dce.phantom.dce_phantom`` with 50 × 50 voxels per (Ktrans, ve)
patch (5 × 4 patches = 50,000 voxels), 300 frames every 2 s, Parker AIF, Rician noise at SNR 20 on
the SPGR signal, concentration recomputed from the noisy signal. Tofts runs on the vp = 0
phantom, extended Tofts on a vp = 0.03 phantom.

scipy: ``curve_fit`` (trf, bounds and start values of the OSIPI code collection: Ktrans 0–5 /min,
ve 0–1, vp 0–1; start 0.6, 0.2, 0.01; finite-difference Jacobian), one voxel at a time, on a random
subset; its rate is extrapolated to the whole phantom. Its model function calls the same compiled
qmri forward model (exact recursive convolution), so the comparison measures the fitting, not the
forward model. Accuracy is reported against ground truth on that same subset for both (bias,
NRMSE relative to the mean true value, Lin's concordance correlation coefficient), and for qmri
on every voxel.

Whole command (``--whole``, default on): ``qmri dce --model tofts`` on the Tofts phantom's signal
series (.nii.gz, 50,000 voxels x 300 frames; signal converted to concentration, fit, every map
written), best of 3 warm runs, with its peak memory; against it, scipy ``curve_fit`` with the Tofts
model written the usual way, ``Ktrans · np.convolve(Cp, exp(-kep t)) · dt`` (vectorised numpy per
model evaluation, numerical Jacobian), on the same voxels' concentration (in process: reading and
writing not included, which favours scipy). ``--memory N`` also times ``qmri dce`` on an
uncompressed series of N voxels (e.g. 1,000,000 x 300 frames) and reports its peak memory.

Usage::

    python benchmarks/dce.py [--subset 300] [--block 50] [--frames 300] [--out benchmarks/results/dce.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numba
import numpy as np


def ccc(x, y):
    """Lin's concordance correlation coefficient."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    mx, my = x.mean(), y.mean()
    return float(2 * np.mean((x - mx) * (y - my)) / (x.var() + y.var() + (mx - my) ** 2))


def accuracy(est, truth):
    ok = np.isfinite(est)
    err = est[ok] - truth[ok]
    scale = np.mean(np.abs(truth[ok]))
    return dict(bias=float(np.mean(err) / scale), nrmse=float(np.sqrt(np.mean(err ** 2)) / scale),
                ccc=ccc(est, truth), failed=float(np.mean(~ok)))


def scipy_fit(model, Y, p0, lower, upper):
    from scipy.optimize import curve_fit

    spec = model.spec
    acq = model.acq
    cov = np.empty(0)
    out = np.empty(spec.n_measurements(acq))
    signal = spec.signal.dispatcher  # the compiled forward model

    def f(_t, *p):
        signal(np.asarray(p, dtype=np.float64), acq, cov, out)
        return out.copy()

    P = np.full((Y.shape[0], spec.n_params), np.nan)
    for v in range(Y.shape[0]):
        try:
            P[v] = curve_fit(f, model.t, Y[v], p0=p0, bounds=(lower, upper), method="trf")[0]
        except (RuntimeError, ValueError):
            pass
    return P


def run(name, vp, args, rng):
    from qmri.models.dce import DCE
    from qmri.models.dce.phantom import dce_phantom

    t = np.arange(args.frames) * 2.0
    ph = dce_phantom(snr=20.0, seed=1, block=(args.block, args.block, 1), times=t, vp=[vp])
    conc = ph.images["dce_conc"]
    mask = ph.mask
    n = int(mask.sum())
    model = DCE(t, np.asarray(ph.acquisition["aif"]), name, aif_times=np.asarray(ph.acquisition["aif_times"]))
    Y = np.ascontiguousarray(conc[mask])
    truth = {k: ph.truth[k][mask] for k in ("Ktrans", "ve", "vp")}
    model.fit(Y[:256])  # compile before timing
    c0 = os.times()
    t0 = time.perf_counter()
    maps = model.fit(Y)
    q_time = time.perf_counter() - t0
    c1 = os.times()
    q_cpu = (c1.user + c1.system) - (c0.user + c0.system)
    sub = rng.choice(n, size=min(args.subset, n), replace=False)
    p0 = {"tofts": [0.6, 0.2], "etm": [0.6, 0.2, 0.01]}[name]
    lo = {"tofts": [0.0, 1e-3], "etm": [0.0, 1e-3, 0.0]}[name]
    hi = {"tofts": [5.0, 1.0], "etm": [5.0, 1.0, 1.0]}[name]
    t0 = time.perf_counter()
    P = scipy_fit(model, Y[sub], p0, lo, hi)
    s_time = (time.perf_counter() - t0) / sub.size * n
    rows = []
    for label, est, idx in (("qmri (all voxels)", {k: maps[k] for k in model.spec.names}, slice(None)),
                            ("qmri (subset)", {k: maps[k][sub] for k in model.spec.names}, sub),
                            ("scipy curve_fit (subset)", {k: P[:, j] for j, k in enumerate(model.spec.names)}, sub)):
        acc = {k: accuracy(est[k], truth[k][idx]) for k in ("Ktrans", "ve")}
        rows.append((label, acc))
    return dict(name=name, n=n, frames=t.size, q_rate=n / q_time, q_cpu=q_cpu, s_rate=n / s_time, q_time=q_time,
                s_time=s_time, rows=rows, conv=maps.converged_fraction, subset=sub.size,
                iters=float(np.mean(maps["n_iter"])))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subset", type=int, default=300, help="voxels fitted by scipy (rate extrapolated)")
    ap.add_argument("--block", type=int, default=50, help="voxels per patch side (50 -> 50,000 voxels)")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "dce.md")
    ap.add_argument("--no-whole", dest="whole", action="store_false", help="skip the whole-command rows")
    ap.add_argument("--memory", type=int, default=0, metavar="VOXELS",
                    help="also fit an uncompressed series of this many voxels and report peak memory")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    whole = whole_commands(args) if (args.whole or args.memory) else []
    results = [run("tofts", 0.0, args, rng), run("etm", 0.03, args, rng)]
    lines = [f"DCE benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"Numba threads {numba.get_num_threads()}",
             "",
             "",
             "qmri CPU s: process CPU time of the qmri fit (all threads); wall-clock rates depend on other load.",
             "",
             "| model | voxels x frames | qmri vox/s | qmri CPU s | scipy vox/s (extrap.) | speed-up | qmri converged | mean LM iter |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['n']} x {r['frames']} | {r['q_rate']:,.0f} | {r['q_cpu']:.2f} | {r['s_rate']:,.1f} "
                     f"(subset {r['subset']}) | {r['q_rate'] / r['s_rate']:,.0f}x | {100 * r['conv']:.1f}% | {r['iters']:.1f} |")
    lines += ["", "| model | estimator | Ktrans bias | Ktrans NRMSE | Ktrans CCC | ve bias | ve NRMSE | ve CCC | failed |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for label, acc in r["rows"]:
            k, v = acc["Ktrans"], acc["ve"]
            lines.append(f"| {r['name']} | {label} | {100 * k['bias']:+.2f}% | {k['nrmse']:.4f} | {k['ccc']:.4f} | "
                         f"{100 * v['bias']:+.2f}% | {v['nrmse']:.4f} | {v['ccc']:.4f} | {100 * k['failed']:.1f}% |")
    text = "\n".join(lines + [""] + whole)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


def tofts_convolve(t_min, cp):
    """Tofts model the usual way: ``C = Ktrans · (Cp ⊛ exp(-kep t)) · dt`` with ``np.convolve``
    (uniform frames; time in min)."""
    dt = t_min[1] - t_min[0]

    def f(_t, Ktrans, ve):
        kep = Ktrans / max(ve, 1e-6)
        return Ktrans * np.convolve(cp, np.exp(-kep * t_min))[: t_min.size] * dt

    return f


def whole_commands(args) -> list[str]:
    """``qmri dce --model tofts`` whole command vs scipy curve_fit with np.convolve; optional memory run."""
    import sys
    import tempfile
    import warnings

    from scipy.optimize import curve_fit

    sys.path.insert(0, str(Path(__file__).parent))
    from commands import best_of, qmri_script

    from qmri import io
    from qmri.models.dce.phantom import dce_phantom
    from qmri.simulate import save_phantom

    lines = ["Whole command vs scipy (same voxels; qmri: whole command incl. reading, signal to concentration and "
             "writing; scipy: fitting only):", "",
             "| estimator | voxels x frames | seconds | voxels/s | peak RSS (MB) |", "|---|---|---:|---:|---:|"]
    t = np.arange(args.frames) * 2.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.whole:
            ph = dce_phantom(snr=20.0, seed=1, block=(args.block, args.block, 1), times=t, vp=[0.0])
            ph.data = ph.data.astype(np.float32)
            save_phantom(ph, tmp / "ph", force=True)
            a = ph.acquisition
            n = int(ph.mask.sum())
            cmd = [qmri_script(), "dce", tmp / "ph" / "dce.nii.gz", "--time", tmp / "ph" / "times.txt", "--aif",
                   tmp / "ph" / "aif.csv", "--t10", a["T10"], "--fa", a["FA"], "--tr", a["TR"], "--r1", a["r1"],
                   "--baseline", a["n_baseline"], "--mask", tmp / "ph" / "mask.nii.gz", "--model", "tofts",
                   "--out-dir", tmp / "fit", "--force", "--quiet"]
            s, rss = best_of(cmd, 3)
            lines.append(f"| qmri dce --model tofts (whole command) | {n} x {t.size} | {s:.2f} | {n / s:,.0f} | {rss:.0f} |")
            conc = ph.images["dce_conc"][ph.mask]
            cp = np.interp(t, np.asarray(a["aif_times"]) if "aif_times" in a else t, np.asarray(a["aif"]))
            f = tofts_convolve(t / 60.0, cp)
            sub = np.random.default_rng(2).choice(n, size=min(args.subset, n), replace=False)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for v in sub:
                    try:
                        curve_fit(f, t, conc[v], p0=(0.6, 0.2), bounds=((0, 0), (5, 1)))
                    except RuntimeError:
                        pass
            rate = len(sub) / (time.perf_counter() - t0)
            lines.append(f"| scipy curve_fit + np.convolve Tofts (fit only, {len(sub)} voxels, extrapolated) | "
                         f"{n} x {t.size} | {n / rate:.1f} | {rate:,.0f} | |")
            lines.append(f"\nqmri dce whole command is {n / s / rate:,.0f}x scipy's fitting alone.")
        if args.memory:
            side = int(round((args.memory / 20) ** 0.5))
            ph = dce_phantom(snr=20.0, seed=3, block=(side, side, 1), times=t, vp=[0.0])
            a = ph.acquisition
            io.write_map(tmp / "big.nii", ph.data.astype(np.float32))
            io.write_map(tmp / "mask.nii", ph.mask.astype(np.float32))
            (tmp / "times.txt").write_text("\n".join(f"{v:g}" for v in t) + "\n")
            n = int(ph.mask.sum())
            del ph
            cmd = [qmri_script(), "dce", tmp / "big.nii", "--time", tmp / "times.txt", "--aif", "parker",
                   "--aif-delay", a["injection_time"], "--t10", a["T10"], "--fa", a["FA"], "--tr", a["TR"], "--r1",
                   a["r1"], "--baseline", a["n_baseline"], "--mask", tmp / "mask.nii", "--model", "tofts",
                   "--out-dir", tmp / "fit_big", "--force", "--quiet"]
            s, rss = best_of(cmd, 1, warm=False)
            lines.append(f"\nMemory: qmri dce --model tofts on {n:,} voxels x {t.size} frames (uncompressed float32 "
                         f"series, {n * t.size * 4 / 1e9:.1f} GB): {s:.1f} s, peak RSS {rss / 1024:.2f} GB.")
    print("\n".join(lines), flush=True)
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
