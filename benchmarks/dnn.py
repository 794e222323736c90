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

Diffusion (ADC, stretched exponential, trace and full-tensor DKI)
    The networks shipped with qmri (``--weights builtin``: trained once, supervised, for the
    phantoms' protocols by ``tools/make_pretrained.py``; nothing trained here) against least
    squares on each model's own phantom at SNR 10, 20 and 40 (S0 / σ of the Rician noise, seed =
    SNR; one phantom per SNR, the same voxels for every method): ``ADC.phantom`` (11 tissues,
    b = 0-1000 s/mm², 16×16×4 voxels each) with ``lsq``; ``StretchedExponential.phantom`` (5
    tissues, b = 0-2000, 16×16×8) with ``lsq``; ``DKI.phantom`` (7 tissues, 3 b=0 + 30 directions at
    b = 1000 and 2000, 16×16×8) as trace DKI (direction-averaged shells) with ``lsq`` and as the
    full tensor with ``wls`` and ``cwls``. Trace DKI's truth is the exact fit of the noise-free
    shells (3 shells, 3 parameters: the powder signal's own D and K, which are not MD and MKT);
    the full tensor's is the phantom's (MD, FA, MK, AK, RK, MKT of the true tensors). Per
    parameter: bias (% of the mean truth) and NRMSE (``qmri.simulate.nrmse_bias``); for the full
    tensor also the % of voxels whose tensors give a negative apparent kurtosis along one of 100
    directions (for ``dnn``: the ensemble mean of the 22 coefficients the maps come from). vox/s:
    ``Model.fit`` over the phantom, in-process, warm (fit only, no file reading or writing).

Reproducibility (``--only reproducibility``)
    ``IVIM.phantom`` at SNR 20 (seed 20) with ``--repro-block`` voxels per tissue (default 16×16×2:
    5,120 voxels), fitted with ``method="dnn"`` as a user gets it (no weights: trained self-supervised
    on the voxels being fitted; default ensemble 1, at most 100 epochs with early stopping) once per
    seed 0-4 (the method's ``seed`` option). Per parameter: the voxel-wise coefficient of variation
    over the 5 trainings (sample SD / mean, in %), its median and 90th percentile over the voxels, and
    each training's NRMSE and bias against the truth. Target: median CV ≤ 3 % for D and f. Written as
    its own section of ``--out``, replacing that section of an earlier run.

Adam settings (``--only adam``)
    qmri's self-supervised IVIM training with its own Adam settings (learning rate 1e-2, batches of
    1024) and with those of IVIM-NET_optim (learning rate 3e-5, batches of 128; Kaandorp et al., MRM
    2021;86:2250), everything else unchanged (at most 100 epochs of at most 500 batches, patience 10,
    training seed 0), on the IVIM rows' voxels (50×50×4 per tissue, 100,000 voxels, seed = SNR) and
    on a tumour-sized ROI (16×16×2 per tissue, 5,120 voxels). The settings are swapped for the run
    (``qmri.fitting.net.training.LEARNING_RATES`` / ``BATCH_SIZE``) and restored. Written as its own
    section of ``--out``.

Timings are wall-clock on whatever machine runs this (torch threads: ``--threads``; Numba: all
cores). No GPU figure is taken unless ``--device cuda`` is given on a machine with one.

Usage::

    python benchmarks/dnn.py [--only ivim dce diffusion reproducibility adam] [--snr 10 20 50] [--threads 1] [--device cpu]
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

from qmri.simulate import nrmse_bias

IVIM_SNRS = (10.0, 20.0, 50.0)
DCE_SNRS = (5.0, 10.0, 20.0)
DIFFUSION_SNRS = (10.0, 20.0, 40.0)


def spearman(a, b):
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[ok], b[ok]).statistic) if ok.sum() > 2 else float("nan")


def accuracy(maps, truth, mask, keys):
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


REPRO_HEADING = "## Reproducibility: dnn retrained with seeds 0-4 (IVIM, SNR 20)"
REPRO_SEEDS = (0, 1, 2, 3, 4)
REPRO_TARGET = 3.0  # % median voxel-wise CV for D and f


def run_reproducibility(args, rows):
    """Fit the SNR-20 IVIM phantom with ``method="dnn"`` (self-supervised on its voxels, the method's
    defaults) once per seed; rows of each training's accuracy and of the voxel-wise CV over seeds."""
    import torch

    from qmri.models import IVIM

    keys = ("f", "D", "Dstar")
    snr = 20.0
    ph = IVIM.phantom(snr=snr, block=tuple(args.repro_block), seed=int(snr))
    model = IVIM.for_phantom(ph)
    mask = ph.mask
    n = int(mask.sum())
    torch.set_num_threads(args.threads)
    est = {k: [] for k in keys}
    for seed in REPRO_SEEDS:
        t0 = time.perf_counter()
        maps = model.fit(ph.data, mask=mask, method="dnn", seed=seed, device=args.device)
        cells = accuracy(maps, ph.truth, mask, keys)
        cells["train + fit s"] = time.perf_counter() - t0
        cells["epochs"] = int(maps.provenance["network_epochs"][0])
        rows.append(("reproducibility trainings", snr, f"dnn seed {seed}", n, cells))
        print(f"reproducibility seed {seed}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in cells.items()), flush=True)
        for k in keys:
            est[k].append(maps[k][mask])
    cells = {}
    for k in keys:
        E = np.stack(est[k])  # (seeds, voxels)
        mean = np.mean(E, axis=0)
        cv = np.full(mean.shape, np.nan)  # undefined where every seed gives 0 (f at its bound): left out
        np.divide(100.0 * np.std(E, axis=0, ddof=1), np.abs(mean), out=cv, where=mean != 0)
        cells[f"CV undefined {k}"] = int(np.sum(mean == 0))
        cells[f"median CV % {k}"] = float(np.nanmedian(cv))
        cells[f"P90 CV % {k}"] = float(np.nanpercentile(cv, 90))
    rows.append(("reproducibility", snr, f"dnn, seeds {REPRO_SEEDS[0]}-{REPRO_SEEDS[-1]}", n, cells))
    print("reproducibility CV: " + ", ".join(f"{k} {_fmt(v)}" for k, v in cells.items()), flush=True)


def reproducibility_section(rows, head, args) -> str:
    cv = next(r[4] for r in rows if r[0] == "reproducibility")
    met = {k: cv[f"median CV % {k}"] <= REPRO_TARGET for k in ("D", "f")}
    verdict = ", ".join(f"{k} {cv[f'median CV % {k}']:.2f} % ({'met' if ok else 'NOT met'})" for k, ok in met.items())
    bx, by, bz = args.repro_block
    n = next(r[3] for r in rows if r[0] == "reproducibility")
    regen = ("Regenerate: `PYTHONPATH=. python benchmarks/dnn.py --only reproducibility "
             f"--threads {args.threads} "
             + ("" if list(args.repro_block) == [16, 16, 2] else f"--repro-block {bx} {by} {bz} ")
             + "--out benchmarks/results/dnn.md` (replaces this section only; about 30 s on 2 cores).")
    data = (f"- Data: `IVIM.phantom(snr=20, seed=20)`, 10 tissues × {bx}×{by}×{bz} = {n:,} voxels, "
            "13 b-values 0-1000 s/mm², Rician noise.")
    method = ("- Method: `model.fit(data, mask=mask, method=\"dnn\", seed=s)` for s = 0-4, nothing else given: the "
              "defaults a user gets (self-supervised on the voxels being fitted, ensemble 1, at most 100 epochs "
              "with early stopping on 10 % of the voxels).")
    measure = ("- CV per voxel = sample SD / mean over the 5 fits; median and 90th percentile over the voxels "
               "(voxels where every fit gives 0, f at its bound, have no CV and are counted in 'CV undefined'). "
               "epochs: epochs run before early stopping. train + fit s: the whole `model.fit` call. NRMSE and "
               "bias relative to the mean truth (`qmri.simulate.nrmse_bias`).")
    published = ("- Published comparison (not run here): Koopman et al. 2021 measured 15 % CV between retrainings "
                 "of IVIM-NET in vivo. `lsq` is deterministic (CV 0 by construction).")
    lines = [REPRO_HEADING, "", regen, "", data, method, measure, published, "",
             head, "", table(rows, "reproducibility"), "", table(rows, "reproducibility trainings"), "",
             f"Target (median voxel-wise CV ≤ {REPRO_TARGET:g} % for D and f): {verdict}."]
    if args.note:
        lines += ["", args.note]
    return "\n".join(lines)


ADAM_HEADING = "## Adam settings: qmri's against IVIM-NET_optim's (IVIM, self-supervised)"
#: (label, learning rate of the per-parameter networks, batch size)
ADAM_SETTINGS = (("dnn, Adam 1e-2, batch 1024 (qmri)", 1e-2, 1024), ("dnn, Adam 3e-5, batch 128 (IVIM-NET_optim)", 3e-5, 128))
ADAM_CASES = (((50, 50, 4), IVIM_SNRS), ((16, 16, 2), (10.0, 20.0)))


def run_adam(args, rows):
    """Train the self-supervised IVIM networks with each of :data:`ADAM_SETTINGS` on the same voxels."""
    from qmri.fitting.net import train, training
    from qmri.models import IVIM

    keys = ("f", "D", "Dstar")
    tmp = Path(tempfile.mkdtemp())
    saved = dict(training.LEARNING_RATES), training.BATCH_SIZE
    try:
        for block, snrs in ADAM_CASES:
            model = IVIM.for_phantom(IVIM.phantom(snr=np.inf, block=block))
            for snr in snrs:
                ph = IVIM.phantom(snr=snr, block=block, seed=int(snr))
                mask = ph.mask
                n = int(mask.sum())
                for label, lr, batch in ADAM_SETTINGS:
                    training.LEARNING_RATES["parameters"], training.BATCH_SIZE = lr, batch
                    t = time.perf_counter()
                    nets = train(model, ph.data, mask=mask, seed=0, threads=args.threads, device=args.device)
                    train_s = time.perf_counter() - t
                    path = tmp / f"{n}-{snr:g}-{lr:g}.pt"
                    nets.save(path, force=True)
                    maps = model.fit(ph.data, mask=mask, method="dnn", weights=str(path), device=args.device)
                    cells = accuracy(maps, ph.truth, mask, keys)
                    cells.update({"rho(D*,f)": spearman(maps["Dstar"][mask], maps["f"][mask]),
                                  "rho truth": spearman(ph.truth["Dstar"][mask], ph.truth["f"][mask]),
                                  "train s": train_s, "epochs": int(nets.histories[0]["epochs_run"])})
                    rows.append(("adam", snr, label, n, cells))
                    print(f"adam SNR {snr:g} {n} voxels {label}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in cells.items()),
                          flush=True)
    finally:
        training.LEARNING_RATES.clear()
        training.LEARNING_RATES.update(saved[0])
        training.BATCH_SIZE = saved[1]


def adam_section(rows, head, args) -> str:
    regen = (f"Regenerate: `PYTHONPATH=. python benchmarks/dnn.py --only adam --threads {args.threads} --out "
             "benchmarks/results/dnn.md` (replaces this section only; about 15 min on 2 cores).")
    what = ("- In-process, the same voxels for both settings: `qmri.fitting.net.train(model, data, mask=mask, seed=0)` "
            "(self-supervised on the voxels, what `--method dnn` does without weights; at most 100 epochs of at most "
            "500 batches, early stopping with patience 10 on 10 % of the voxels), then `model.fit(..., method=\"dnn\")` "
            "with those networks. Only the Adam learning rate of the per-parameter networks and the batch size differ. "
            "`IVIM.phantom(snr, seed=snr)`: 10 tissues, 13 b-values 0-1000 s/mm², Rician noise; 100,000 voxels "
            "(50×50×4 per tissue, the IVIM table's voxels) and 5,120 voxels (16×16×2, a tumour-sized ROI). NRMSE and "
            "bias relative to the mean truth; rho: Spearman ρ(D*, f). IVIM-NET itself is not run here (`ivimnet` not "
            "installed); its rows on the 100,000 voxels are in the IVIM table above.")
    return "\n".join([ADAM_HEADING, "", regen, "", what, "", head, "", table(rows, "adam")] + (["", args.note] if args.note else []))


def write_section(path: Path, heading: str, text: str) -> None:
    """Put ``text`` (starting with ``heading``) in ``path``: replacing that section of an earlier run
    (up to the next ``## `` heading), else appended."""
    old = path.read_text() if path.exists() else ""
    before, after = old, ""
    if heading in old:
        before, rest = old[:old.index(heading)], old[old.index(heading) + len(heading):]
        after = rest[rest.index("\n## ") + 1:] if "\n## " in rest else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((before.rstrip() + "\n\n" if before.strip() else "") + text + "\n" + ("\n" + after if after else ""))


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


def negative_kurtosis(model, Y, method) -> float:
    """% of the voxels ``Y`` (n, m) whose fitted DKI tensors give a negative apparent kurtosis along
    one of 100 directions; for ``dnn`` the coefficients are the shipped networks' ensemble mean (what
    the maps are computed from)."""
    from qmri.models.diffusion.dki import apparent_kurtosis, hemisphere

    if method == "dnn":
        from qmri.fitting.net.data import voxel_inputs
        from qmri.fitting.net.training import predict
        from qmri.fitting.net.weights import load

        inputs, _, good = voxel_inputs(model, Y, None)
        beta = predict(load("builtin", model).networks, inputs).mean(axis=0)[good, 1:]
    else:
        beta = model.coefficients(Y, method)[0]
    return 100.0 * float(np.mean(np.nanmin(apparent_kurtosis(beta, hemisphere(100)), axis=1) < 0))


#: Diffusion cases: (table, model class name, phantom block, methods besides dnn, parameters scored).
DIFFUSION_CASES = (
    ("ADC", "ADC", (16, 16, 4), ("lsq",), ("ADC",)),
    ("stretched", "StretchedExponential", (16, 16, 8), ("lsq",), ("DDC", "alpha")),
    ("DKI trace", "DKI", (16, 16, 8), ("lsq",), ("D", "K")),
    ("DKI", "DKI", (16, 16, 8), ("wls", "cwls"), ("MD", "FA", "MK", "AK", "RK", "MKT")),
)


def run_diffusion(args, rows):
    import qmri.models

    for family, cls_name, block, methods, keys in DIFFUSION_CASES:
        cls = getattr(qmri.models, cls_name)
        trace = family == "DKI trace"

        def model_for(ph):
            if cls is qmri.models.DKI:
                return cls.from_acquisition(ph.acquisition["bvals"], ph.acquisition["bvecs"], trace=trace)
            return cls.for_phantom(ph)

        ph0 = cls.phantom(snr=np.inf, block=block)
        model = model_for(ph0)
        truth = dict(ph0.truth)
        if trace:  # the powder signal's own D and K: exact on the noise-free shells
            ref = model.fit(ph0.data, mask=ph0.mask, method="lsq")
            truth = {k: ref[k] for k in keys}
        for snr in args.diffusion_snr:
            ph = cls.phantom(snr=snr, block=block, seed=int(snr))
            mask = ph.mask
            n = int(mask.sum())
            for method in methods + ("dnn",):
                kw = {"weights": "builtin", "device": args.device} if method == "dnn" else {}
                model.fit(ph.data[:2, :2, :1], method=method, **kw)  # compile / load the Numba cache, the weights
                t0 = time.perf_counter()
                maps = model.fit(ph.data, mask=mask, method=method, **kw)
                rate = n / (time.perf_counter() - t0)
                cells = {}
                for k in keys:
                    e, b = nrmse_bias(maps[k], truth[k], mask)
                    cells[f"bias % {k}"], cells[f"NRMSE {k}"] = 100.0 * b, e
                cells["failed %"] = 100.0 * float(np.mean(maps["status"][mask] == 2))
                if family == "DKI":
                    cells["K<0 %"] = negative_kurtosis(model, ph.data[mask], method)
                cells["vox/s"] = rate
                label = "dnn (shipped networks)" if method == "dnn" else method
                rows.append((family, snr, label, n, cells))
                print(f"{family} SNR {snr:g} {label}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in cells.items()),
                      flush=True)


def dki_target(rows) -> str:
    """Whether dnn meets the target on the full-tensor DKI phantom: MK, AK and RK NRMSE at most
    cwls's at SNR <= 20, and no voxel with a negative apparent kurtosis."""
    sel = {(snr, label): cells for fam, snr, label, _, cells in rows if fam == "DKI"}
    lines = []
    for snr in sorted({snr for snr, _ in sel}):
        d, c = sel.get((snr, "dnn (shipped networks)")), sel.get((snr, "cwls"))
        if d is None or c is None:
            continue
        parts = [f"{k} {d[f'NRMSE {k}']:.3f} vs {c[f'NRMSE {k}']:.3f}" for k in ("MK", "AK", "RK")]
        ok = all(d[f"NRMSE {k}"] <= c[f"NRMSE {k}"] for k in ("MK", "AK", "RK"))
        lines.append(f"SNR {snr:g}: NRMSE dnn vs cwls {', '.join(parts)} ({'at most' if ok else 'NOT at most'} "
                     f"cwls); K<0 % dnn {d['K<0 %']:.2f} (cwls {c['K<0 %']:.2f})"
                     + ("" if snr <= 20 else " [SNR > 20: not part of the target]"))
    return "Target (dnn MK/AK/RK NRMSE <= cwls at SNR <= 20, 0 % K<0):\n" + "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (int, np.integer)):  # counts
        return f"{v:,}"
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
    ap.add_argument("--only", nargs="+", choices=("ivim", "dce", "diffusion", "reproducibility", "adam"),
                    default=["ivim", "dce", "diffusion"])
    ap.add_argument("--snr", nargs="+", type=float, default=list(IVIM_SNRS), help="IVIM SNRs (default 10 20 50)")
    ap.add_argument("--diffusion-snr", nargs="+", type=float, default=list(DIFFUSION_SNRS),
                    help="SNRs of the ADC, stretched and DKI cases (default 10 20 40)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    ap.add_argument("--dce-signals", type=int, default=50_000, help="simulated curves per DCE network")
    ap.add_argument("--repro-block", nargs=3, type=int, default=[16, 16, 2], metavar=("X", "Y", "Z"),
                    help="voxels per tissue of the reproducibility phantom (default 16 16 2: 5,120 voxels)")
    ap.add_argument("--note", help="a paragraph added at the end of the reproducibility or Adam section")
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
    if "diffusion" in args.only:
        run_diffusion(args, rows)
    repro = []
    if "reproducibility" in args.only:
        run_reproducibility(args, repro)
    titled = {c[0] for c in DIFFUSION_CASES}  # the diffusion tables are named (the older ones by their columns)
    families = ("IVIM", "uncertainty", "DCE") + tuple(c[0] for c in DIFFUSION_CASES)
    text = head + "\n\n" + "\n\n".join((f"{f}:\n\n" if f in titled else "") + table(rows, f)
                                         for f in families if any(r[0] == f for r in rows))
    if any(r[0] == "DKI" for r in rows):
        text += "\n\n" + dki_target(rows)
    if rows:
        print(text)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n")
    adam = []
    if "adam" in args.only:
        run_adam(args, adam)
        section = adam_section(adam, head, args)
        print(section)
        if args.out:
            write_section(args.out, ADAM_HEADING, section)
    if repro:
        section = reproducibility_section(repro, head, args)
        print(section)
        if args.out:
            write_section(args.out, REPRO_HEADING, section)


if __name__ == "__main__":
    main()
