"""Network estimators (method ``dnn``) against least squares, and IVIM-NET when installed: accuracy and speed.

IVIM
    Phantom ``IVIM.phantom`` (10 OSIPI tissues, 13 b-values 0-1000 s/mm², S0 1000) with 50×50×4
    voxels per tissue (100,000 voxels), Rician noise at SNR 10, 20 and 50 (one phantom per SNR, the
    same for every row). Rows:

    * ``lsq``, ``segmented``: qmri least squares on every voxel.
    * ``dnn self-supervised``: networks trained on the phantom's voxels (``qmri.fitting.net.train``
      with data; what ``--method dnn`` does without weights), then used on the same voxels.
    * ``dnn supervised``: one network per run, trained once on 100,000 simulated signals for the
      protocol (SNR 5-100, uniform over the bounds), used at every SNR.
    * ``IVIM-NET optim``: ``IVIMNET.deep.learn_IVIM`` / ``predict_IVIM`` of the PyPI package
      ``ivimnet`` (GPL-3.0; run, not copied; optional) with its ``optim`` settings, trained on the
      same voxels. Voxels its own filter leaves out count as missing.

    NRMSE and bias relative to the mean truth (``qmri.simulate.nrmse_bias``), Spearman ρ between
    the estimated D* and f (and the truth's), training seconds, inference voxels/s (in-process:
    ``Model.fit`` on the whole phantom for qmri, ``predict_IVIM`` for IVIM-NET; warm).

DCE
    Phantom ``DCE.phantom`` (Ktrans × ve patches of 20×20 voxels, vp 0 / 0.02 / 0.05; Parker AIF;
    SPGR signal with Rician noise at SNR 5, 10, 20, concentration recomputed), Tofts on the vp = 0
    patches, extended Tofts (ETM) on all. ``lsq`` against ``dnn supervised`` (one network per
    model, trained on simulated curves with 64 AIFs, curve SNR 3-100), with and without a fitted
    delay; for the delay rows the model is given the AIF 3 s early, so the true delay is +3 s.

Timings are wall-clock on whatever machine runs this (torch threads: ``--threads``; Numba: all
cores). No GPU figure is taken unless ``--device cuda`` is given on a machine with one.

Usage::

    python benchmarks/dnn.py [--only ivim dce] [--snr 10 20 50] [--threads 1] [--device cpu]
                             [--out benchmarks/results/dnn.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

IVIM_SNRS = (10.0, 20.0, 50.0)
DCE_SNRS = (5.0, 10.0, 20.0)


def spearman(a, b):
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[ok], b[ok]).statistic) if ok.sum() > 2 else float("nan")


def accuracy(maps, truth, mask, keys):
    from qmri.simulate import nrmse_bias

    cells = {}
    for k in keys:
        e, b = nrmse_bias(maps[k], truth[k], mask)
        cells[f"NRMSE {k}"], cells[f"bias {k}"] = e, b
    return cells


def ivimnet_fit(Y, bvals, threads):
    """IVIM-NET optim trained on ``Y`` (n, m) and applied to it; (estimates dict, train s, vox/s)."""
    import contextlib
    import io

    import torch
    from IVIMNET import deep

    torch.set_num_threads(threads)

    class Arg:
        pass

    arg = Arg()
    arg.train_pars, arg.net_pars = deep.train_pars("optim"), deep.net_pars("optim")
    arg.sim, arg.fit, arg.fig, arg.save_name, arg.norm_data_full = deep.sim(), deep.lsqfit(), False, "optim", False
    arg.train_pars.use_cuda, arg.train_pars.device = False, torch.device("cpu")
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        t0 = time.perf_counter()
        net = deep.learn_IVIM(Y.copy(), bvals, arg)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        Dt, Fp, Dp, S0 = deep.predict_IVIM(Y.copy(), bvals, net, arg)
        rate = Y.shape[0] / (time.perf_counter() - t0)
    est = {"f": Fp, "D": Dt, "Dstar": Dp}
    missing = (Dt == 0) & (Fp == 0) & (Dp == 0)  # voxels its filter left out come back as zeros
    for v in est.values():
        v[missing] = np.nan
    return est, train_s, rate, float(np.mean(missing))


def run_ivim(args, rows):
    import torch

    from qmri.fitting.net import train
    from qmri.models import IVIM

    keys = ("f", "D", "Dstar")
    tmp = Path(tempfile.mkdtemp())
    block = (50, 50, 4)
    ph0 = IVIM.phantom(snr=np.inf, block=block)
    model = IVIM.for_phantom(ph0)
    t0 = time.perf_counter()
    sup = train(model, n=100_000, snr="5:100", seed=0, threads=args.threads, device=args.device)
    sup_s = time.perf_counter() - t0
    sup.save(tmp / "sup.pt")
    try:
        import IVIMNET  # noqa: F401
        have_ivimnet = True
    except ImportError:
        have_ivimnet = False
        print("IVIM-NET: not installed (pip install ivimnet to add its rows)")
    for snr in args.snr:
        ph = IVIM.phantom(snr=snr, block=block, seed=int(snr))
        mask = ph.mask
        n = int(mask.sum())
        rho_true = spearman(ph.truth["Dstar"][mask], ph.truth["f"][mask])

        def row(label, maps, train_s, rate, extra=""):
            cells = accuracy(maps, ph.truth, mask, keys)
            cells.update({"rho(D*,f)": spearman(maps["Dstar"][mask], maps["f"][mask]), "rho truth": rho_true,
                          "train s": train_s, "vox/s": rate, "note": extra})
            rows.append(("IVIM", snr, label, n, cells))
            print(f"IVIM SNR {snr:g} {label}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in cells.items()), flush=True)

        for method in ("lsq", "segmented"):
            model.fit(ph.data[:2, :2, :1], method=method)  # compile / load the Numba cache
            t = time.perf_counter()
            maps = model.fit(ph.data, mask=mask, method=method)
            row(method, maps, 0.0, n / (time.perf_counter() - t))
        t = time.perf_counter()
        own = train(model, ph.data, mask=mask, seed=0, threads=args.threads, device=args.device)
        train_s = time.perf_counter() - t
        own.save(tmp / f"self{snr:g}.pt", force=True)
        for label, path, ts in (("dnn self-supervised", tmp / f"self{snr:g}.pt", train_s),
                                ("dnn supervised", tmp / "sup.pt", sup_s)):
            rates = {}
            for threads in sorted({args.threads, os.cpu_count()}):
                torch.set_num_threads(threads)
                model.fit(ph.data[:2, :2, :1], method="dnn", weights=str(path))
                t = time.perf_counter()
                maps = model.fit(ph.data, mask=mask, method="dnn", weights=str(path), device=args.device)
                rates[threads] = n / (time.perf_counter() - t)
            torch.set_num_threads(args.threads)
            row(label, maps, ts, rates[args.threads],
                ("trained on these voxels" if "self" in label else "trained once, SNR 5-100")
                + f"; {rates[os.cpu_count()]:,.0f} vox/s with {os.cpu_count()} torch threads")
        uncertainty(model, ph, rows, snr, args)
        if have_ivimnet:
            est, ts, rate, miss = ivimnet_fit(ph.data[mask], np.asarray(ph.acquisition["bvals"]), args.threads)
            full = {k: np.full(mask.shape, np.nan) for k in keys}
            for k in keys:
                full[k][mask] = est[k]
            row("IVIM-NET optim", full, ts, rate, f"ivimnet; {100 * miss:.1f}% voxels filtered out")


def uncertainty(model, ph, rows, snr, args):
    """Median least-squares SE and ensemble SD (the 3 shipped networks) per parameter, beside the
    actual spread of each method's estimates within a tissue (pooled SD over the phantom's regions)."""
    mask = ph.mask
    lsq = model.fit(ph.data, mask=mask, method="lsq", compute_se=True)
    net = model.fit(ph.data, mask=mask, method="dnn", weights="builtin", device=args.device)
    cells = {}
    for k in ("f", "D", "Dstar"):
        for label, maps, u in (("lsq", lsq, f"{k}_se"), ("dnn", net, f"{k}_sd")):
            spread = [np.nanstd(maps[k][ph.labels == r]) for r in np.unique(ph.labels[mask])]
            cells[f"{label} median {u}"] = float(np.nanmedian(maps[u][mask]))
            cells[f"{label} SD within tissue {k}"] = float(np.sqrt(np.mean(np.square(spread))))
    rows.append(("uncertainty", snr, "lsq SE vs dnn ensemble SD (3 shipped networks)", int(mask.sum()), cells))
    print(f"uncertainty SNR {snr:g}: " + ", ".join(f"{k} {v:.3g}" for k, v in cells.items()), flush=True)


def run_dce(args, rows):
    from qmri.fitting.net import train
    from qmri.models import DCE
    from qmri.models.dce.aif import shift

    block = (20, 20, 1)
    ph0 = DCE.phantom(snr=np.inf, block=block)
    t = np.asarray(ph0.acquisition["times"])
    cp = np.asarray(ph0.acquisition["aif"])
    ta = np.asarray(ph0.acquisition["aif_times"])  # the AIF's own grid
    early = shift(ta, cp, -3.0)  # given 3 s early: the tissue arrives 3 s after this AIF
    tmp = Path(tempfile.mkdtemp())
    cases = []
    for pk in ("tofts", "etm"):
        for delay in (False, True):
            model = DCE(t, early if delay else cp, pk, fit_delay=delay, aif_times=ta)
            t0 = time.perf_counter()
            tr = train(model, n=args.dce_signals, snr="3:100", seed=0, threads=args.threads, device=args.device)
            path = tmp / f"{pk}{int(delay)}.pt"
            tr.save(path)
            cases.append((pk, delay, model, path, time.perf_counter() - t0))
            print(f"DCE {pk}{' + delay' if delay else ''}: trained in {cases[-1][4]:.0f} s "
                  f"({tr.histories[0]['epochs_run']} epochs)", flush=True)
    for snr in DCE_SNRS:
        ph = DCE.phantom(snr=snr, block=block, seed=int(snr))
        conc = ph.images["dce_conc"]
        truth = dict(ph.truth)
        truth["delay"] = np.where(ph.mask, 3.0, np.nan)
        for pk, delay, model, path, train_s in cases:
            mask = ph.mask & (ph.truth["vp"] == 0) if pk == "tofts" else ph.mask
            n = int(mask.sum())
            keys = ("Ktrans", "ve") + (("vp",) if pk == "etm" else ())
            for method, kw in (("lsq", {}), ("dnn", {"weights": str(path), "device": args.device})):
                model.fit(conc[:2, :2, :1], method=method, **kw)
                t0 = time.perf_counter()
                maps = model.fit(conc, mask=mask, method=method, **kw)
                rate = n / (time.perf_counter() - t0)
                cells = accuracy(maps, truth, mask, keys)
                if delay:
                    err = maps["delay"][mask] - 3.0
                    cells["delay bias s"], cells["delay RMSE s"] = float(np.nanmean(err)), float(
                        np.sqrt(np.nanmean(err ** 2)))
                cells.update({"train s": train_s if method == "dnn" else 0.0, "vox/s": rate})
                label = f"{pk}{' + delay' if delay else ''} {method}"
                rows.append(("DCE", snr, label, n, cells))
                print(f"DCE SNR {snr:g} {label}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in cells.items()), flush=True)


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    v = float(v)
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3f}" if abs(v) >= 0.01 or v == 0 else f"{v:.3g}"


def table(rows, family) -> str:
    sel = [r for r in rows if r[0] == family]
    cols = []
    for r in sel:
        cols += [c for c in r[4] if c not in cols]
    lines = ["| SNR | method | voxels | " + " | ".join(cols) + " |", "|---|---|---:|" + "---:|" * len(cols)]
    for _, snr, label, n, cells in sel:
        lines.append(f"| {snr:g} | {label} | {n} | " + " | ".join(_fmt(cells[c]) if c in cells else "-" for c in cols)
                     + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=("ivim", "dce"), default=["ivim", "dce"])
    ap.add_argument("--snr", nargs="+", type=float, default=list(IVIM_SNRS), help="IVIM SNRs (default 10 20 50)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    ap.add_argument("--dce-signals", type=int, default=50_000, help="simulated curves per DCE network")
    ap.add_argument("--out", type=Path, help="also write the tables here (e.g. benchmarks/results/dnn.md)")
    args = ap.parse_args(argv)
    import numba
    import torch

    torch.set_num_threads(args.threads)  # inference; training is given args.threads itself
    head = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Numba threads "
            f"{numba.get_num_threads()}, torch {torch.__version__} threads {args.threads}, device {args.device}")
    print(head)
    rows = []
    if "ivim" in args.only:
        run_ivim(args, rows)
    if "dce" in args.only:
        run_dce(args, rows)
    text = head + "\n\n" + "\n\n".join(table(rows, f) for f in ("IVIM", "uncertainty", "DCE")
                                         if any(r[0] == f for r in rows))
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
