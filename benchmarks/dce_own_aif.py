"""DCE: a supervised network trained for the fit's own AIF and frame times, against ``lsq`` (an experiment).

The networks ``--method dnn`` uses for DCE read the AIF as an input channel and are trained on 64 AIFs
(:mod:`qmri.models.dce.network`). This script measures the alternative that the DCE networks of the
literature use: one network trained, at fit time, on curves simulated with the AIF and frame times
of the fit itself. Nothing here is part of ``--method dnn``; it measures whether building it is worth it.

For the DCE phantom (``dce_phantom(snr, block=(20, 20, 1), seed=snr)``: 2 s frames, Parker AIF,
Rician noise on the SPGR signal, the concentration recomputed from it; frames subsampled to
``--interval`` s after the conversion, so that the baseline stays the 10 pre-contrast frames):

1. ``lsq`` on all voxels (Tofts: the vp = 0 slice; ETM: all), the reference;
2. ``lsq`` on 2,000 random voxels: their residuals give the noise and (``--prior empirical``) their
   estimates, jittered (× exp(N(0, 0.1)); vp + N(0, 0.005); delay + N(0, 1 s)), the training
   parameters; ``--prior declared``: the model's declared training ranges (``model.network.sample``);
3. ``--signals`` curves from ``model.spec.evaluate`` with noise: ``gaussian`` (σ drawn from the
   2,000 voxels' residual RMS) or ``residuals`` (a residual vector of one of them, × sqrt(m/(m-p)),
   random signs per frame);
4. a per-parameter network (:class:`qmri.fitting.net.networks.ParameterNets`, width ``--width``, no
   AIF channel), supervised (:func:`qmri.fitting.net.training.train_network`), outputs over the
   range of the training parameters (``--tight``) or the network bounds.

Reported per parameter: NRMSE and bias (relative to the mean truth) of both on the phantom's voxels,
and on 20,000 held-out simulated curves from the training distribution (what the network would give
if the simulation matched the data exactly). In-process, one torch thread pool (``--threads``).

Usage: ``PYTHONPATH=. python benchmarks/dce_own_aif.py --snr 10 --interval 4 --model tofts --prior empirical
--noise residuals --tight [--width 64] [--signals 200000] [--out benchmarks/results/dce_own_aif.md]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snr", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=4.0, help="frame interval, s (a multiple of 2)")
    ap.add_argument("--model", default="tofts", choices=("tofts", "etm"))
    ap.add_argument("--delay", action="store_true", help="AIF given 3 s early, delay fitted")
    ap.add_argument("--prior", default="empirical", choices=("empirical", "declared"))
    ap.add_argument("--noise", default="residuals", choices=("residuals", "gaussian"))
    ap.add_argument("--tight", action="store_true", help="network outputs over the training parameters' range")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--features", default="none", choices=("none", "lsq"),
                    help="lsq: each curve's least-squares estimate is read beside it (a learned correction)")
    ap.add_argument("--signals", type=int, default=200_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    import torch

    from qmri.fitting.net.data import Inputs
    from qmri.fitting.net.networks import Network, architecture
    from qmri.fitting.net.training import predict, train_network
    from qmri.models import DCE
    from qmri.models.dce.aif import shift
    from qmri.models.dce.phantom import dce_phantom
    from qmri.simulate import add_gaussian_noise, nrmse_bias

    torch.set_num_threads(args.threads)
    ph = dce_phantom(snr=args.snr, block=(20, 20, 1), seed=int(args.snr))
    k = int(round(args.interval / 2.0))
    t = np.asarray(ph.acquisition["times"])[::k]
    ta, cp = np.asarray(ph.acquisition["aif_times"]), np.asarray(ph.acquisition["aif"])
    model = DCE(t, shift(ta, cp, -3.0) if args.delay else cp, args.model, fit_delay=args.delay, aif_times=ta)
    conc = np.ascontiguousarray(ph.images["dce_conc"][..., ::k])
    mask = ph.mask & (ph.truth["vp"] == 0) if args.model == "tofts" else ph.mask
    keys = ["Ktrans", "ve"] + (["vp"] if args.model == "etm" else [])
    names = list(model.spec.names)
    lsq = model.fit(conc, mask=mask, method="lsq")
    rng = np.random.default_rng(0)
    Y = conc[mask]
    sub = rng.choice(Y.shape[0], min(2000, Y.shape[0]), replace=False)
    fitted = model.fit(Y[sub], method="lsq")
    P = np.stack([np.asarray(fitted[n]) for n in names], axis=1)
    res = Y[sub] - model.spec.evaluate(P, model.acq)
    dof = t.size - len(names)
    sig = np.sqrt(np.sum(res ** 2, axis=1) / dof)
    lo, hi = (np.asarray(v, dtype=np.float64) for v in model.network.bounds())
    n = args.signals
    if args.prior == "declared":
        PT = model.network.sample(n, rng)
    else:
        idx = rng.integers(0, P.shape[0], n)
        PT = P[idx] * np.exp(rng.normal(0.0, 0.1, (n, P.shape[1])))
        for j, name in enumerate(names):
            if name in ("vp", "delay"):
                PT[:, j] = P[idx, j] + rng.normal(0.0, 0.005 if name == "vp" else 1.0, n)
        PT = np.clip(PT, lo, hi)
    if args.tight:
        lo, hi = PT.min(axis=0), PT.max(axis=0)
        hi = np.where(hi > lo, hi, lo + 1e-6)

    def noisy(clean):
        m = clean.shape[0]
        if args.noise == "gaussian":
            return add_gaussian_noise(clean, sig[rng.integers(0, sig.size, m)][:, None], rng)
        R = res[rng.integers(0, res.shape[0], m)] * np.sqrt(t.size / dof)
        return clean + R * rng.choice([-1.0, 1.0], R.shape)

    CT = model.spec.evaluate(PT, model.acq)
    YT = noisy(CT)
    S = np.clip((PT - lo) / (hi - lo), 0.0, 1.0)
    acq = [np.asarray(model.acq)]
    blo, bhi = (np.asarray(v, dtype=np.float64) for v in model.network.bounds())

    def features(X, fitted=None):
        if args.features == "none":
            return None
        fitted = model.fit(X, method="lsq") if fitted is None else fitted
        F = np.stack([np.nan_to_num(np.asarray(fitted[nm], dtype=np.float64), nan=0.0) for nm in names], axis=1)
        return np.clip(F, blo, bhi).astype(np.float32)

    inputs = Inputs(YT.astype(np.float32), features(YT), np.zeros(n, np.int64), acq, None, S.astype(np.float32))

    class Ranges:  # the network's output ranges: those of the training parameters with --tight
        def __init__(self, m):
            self.spec, self.network = m.spec, type("R", (), {"bounds": staticmethod(lambda: (lo, hi))})()

    t0 = time.perf_counter()
    net, hist = train_network(Ranges(model), inputs, supervised=True, seed=0,
                              arch=architecture(t.size, 0 if args.features == "none" else len(names), len(names), 0,
                                                width=args.width))
    train_s = time.perf_counter() - t0
    assert isinstance(net, Network)

    def est(X, fitted=None):
        return predict([net], Inputs(X.astype(np.float32), features(X, fitted), np.zeros(X.shape[0], np.int64),
                                     acq, None))[0]

    PD = est(Y, {nm: np.asarray(lsq[nm])[mask] for nm in names})
    held = rng.integers(0, n, 20_000)
    Yh, Ph = noisy(CT[held]), PT[held]
    lh = model.fit(Yh, method="lsq")
    Dh = est(Yh, lh)
    everywhere = np.ones(mask.sum(), bool)
    head = (f"SNR {args.snr:g}, {args.interval:g} s frames, {args.model}{' + delay' if args.delay else ''}, "
            f"prior {args.prior}, noise {args.noise}, {'tight' if args.tight else 'bounds'} ranges, "
            f"{'lsq estimates as inputs, ' if args.features == 'lsq' else ''}width "
            f"{args.width}, {n} signals: trained in {train_s:.0f} s ({hist['epochs_run']} epochs), "
            f"{int(mask.sum())} phantom voxels")
    lines = [f"### {head}", "", "| parameter | data | lsq NRMSE | lsq bias | dnn NRMSE | dnn bias | dnn/lsq |",
             "|---|---|---|---|---|---|---|"]
    for j, name in enumerate(names):
        if name not in keys:
            continue
        for data, e1, e2 in (("phantom", nrmse_bias(np.asarray(lsq[name])[mask], ph.truth[name][mask], everywhere),
                              nrmse_bias(PD[:, j], ph.truth[name][mask], everywhere)),
                             ("simulated", nrmse_bias(np.asarray(lh[name]), Ph[:, j], np.ones(Ph.shape[0], bool)),
                              nrmse_bias(Dh[:, j], Ph[:, j], np.ones(Ph.shape[0], bool)))):
            lines.append(f"| {name} | {data} | {e1[0]:.4f} | {e1[1]:+.4f} | {e2[0]:.4f} | {e2[1]:+.4f} | "
                         f"{e2[0] / e1[0]:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    if args.out is not None:
        old = args.out.read_text() if args.out.exists() else ""
        args.out.write_text(old + ("\n" if old else "") + text)


if __name__ == "__main__":
    main()
