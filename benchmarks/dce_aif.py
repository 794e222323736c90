"""DCE with an AIF known more finely than the frames: the AIF on its own grid vs interpolated onto the frames.

For frames every 2, 4 and 6 s (300 s) and a Parker AIF (plasma, Hct 0.42, injection at 20 s) known
every 0.5 s, tissue curves are simulated with the continuous model (the AIF on a 0.05 s grid, on which
the piecewise-linear convolution equals the continuous one to ~1e-5) plus Gaussian noise, for Tofts,
extended Tofts, Patlak and 2CXM, without and with a delay (truth U(-3, 6) s, fitted). Each set is
fitted three ways with the same least-squares engine:

* ``frames``: the 0.5 s AIF interpolated onto the frame times (what qmri did before);
* ``own grid``: the 0.5 s AIF on its own grid (``DCE(t, cp, model, aif_times=ta)``);
* ``exact``: the continuous model itself (the 0.05 s AIF), the reference.

Reported: the percentage of voxels whose parameters are all within OSIPI's tolerances (Ktrans
0.005 + 10 %, ve 0.05, vp 0.025, Fp 5 mL/min/100mL + 10 %, PS 0.005 + 10 %; the delay is not
scored), and voxels/s of each fit (warm, best of ``--repeat``, the three fits interleaved; the
machine may be shared, compare within a run).

Usage: ``python benchmarks/dce_aif.py [--voxels 1000] [--sigma 0.01] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

TOL = {"Ktrans": (0.005, 0.1), "ve": (0.05, 0.0), "vp": (0.025, 0.0), "Fp": (5.0, 0.1), "PS": (0.005, 0.1)}
RANGES = {
    "tofts": {"Ktrans": (0.02, 0.6), "ve": (0.05, 0.5)},
    "etm": {"Ktrans": (0.02, 0.6), "ve": (0.05, 0.5), "vp": (0.005, 0.1)},
    "patlak": {"Ktrans": (0.005, 0.1), "vp": (0.01, 0.1)},
    "2cxm": {"Fp": (10.0, 100.0), "PS": (0.02, 0.3), "ve": (0.05, 0.5), "vp": (0.02, 0.1)},
}


def within(maps, truth):
    ok = np.ones(len(next(iter(truth.values()))), dtype=bool)
    for k, v in truth.items():
        if k in TOL:
            a, r = TOL[k]
            ok &= np.abs(maps[k] - v) <= a + r * np.abs(v)
    return 100.0 * ok.mean()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--voxels", type=int, default=1000)
    ap.add_argument("--sigma", type=float, default=0.01, help="noise SD in mM")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--intervals", type=float, nargs="+", default=[2.0, 4.0, 6.0])
    args = ap.parse_args(argv)
    from qmri.models.dce import DCE
    from qmri.models.dce.aif import parker

    rng = np.random.default_rng(0)
    aif = lambda x: parker(x, hct=0.42, delay=20.0)  # noqa: E731
    print(f"{args.voxels} voxels per row, noise SD {args.sigma:g} mM, AIF known every 0.5 s; "
          "% of voxels within OSIPI tolerances and voxels/s")
    print("| model | delay fitted | frame interval (s) | frames | own grid | exact | own - exact (pp) | "
          "frames vox/s | own grid vox/s | own/frames time |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, ranges in RANGES.items():
        for fit_delay in (False, True):
            for dt in args.intervals:
                t = np.arange(0.0, 300.0 + 1e-9, dt)
                ta = np.arange(0.0, 300.0 + 1e-9, 0.5)
                tf = np.arange(0.0, 300.0 + 1e-9, 0.05)
                truth = {k: rng.uniform(a, b, args.voxels) for k, (a, b) in ranges.items()}
                delay = rng.uniform(-3.0, 6.0, args.voxels) if fit_delay else np.zeros(args.voxels)
                clean = DCE(t, aif(tf), name, aif_times=tf).concentration({**truth, "delay": delay})
                Y = clean + rng.normal(0.0, args.sigma, clean.shape)
                models = {"frames": DCE(t, np.interp(t, ta, aif(ta)), name, fit_delay=fit_delay),
                          "own grid": DCE(t, aif(ta), name, fit_delay=fit_delay, aif_times=ta),
                          "exact": DCE(t, aif(tf), name, fit_delay=fit_delay, aif_times=tf)}
                best = {k: np.inf for k in models}
                maps = {}
                for m in models.values():
                    m.fit(Y[:8])  # compile
                for _ in range(args.repeat):
                    for k in ("frames", "own grid"):
                        t0 = time.perf_counter()
                        maps[k] = models[k].fit(Y)
                        best[k] = min(best[k], time.perf_counter() - t0)
                maps["exact"] = models["exact"].fit(Y)
                pct = {k: within(maps[k], truth) for k in models}
                print(f"| {name} | {'yes' if fit_delay else 'no'} | {dt:g} | {pct['frames']:.1f} | {pct['own grid']:.1f} | "
                      f"{pct['exact']:.1f} | {pct['own grid'] - pct['exact']:+.1f} | {args.voxels / best['frames']:,.0f} | "
                      f"{args.voxels / best['own grid']:,.0f} | {best['own grid'] / best['frames']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
