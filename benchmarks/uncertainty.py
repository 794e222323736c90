"""Are the uncertainties right? Coverage of the 95 % intervals, bias, NRMSE and efficiency (CRLB² / variance).

For each model (IVIM, ADC, stretched exponential, trace DKI, DCE Tofts and extended Tofts, VFA T1), on the
protocol of its phantom (``qmri phantom``; trace DKI: b = 0, 250, 500, 1000-2500 s/mm²; VFA: flip
angles 2-20°, TR 5 ms), ``SETS`` parameter sets are
drawn from the prior below (:func:`qmri.simulate.sample_parameters`), each simulated ``REPEATS`` times
with noise at SNR 10, 20 and 50: Rician noise of σ = S0 / SNR for magnitude signals
(:func:`qmri.simulate.add_rician_noise`), Gaussian noise of σ = (peak concentration of the set) / SNR
for DCE concentrations (:func:`qmri.simulate.add_gaussian_noise`). Seeds: the parameter sets from seed
0, the noise from seed 1000·SNR + model index.

Per method, model, parameter and SNR:

* **coverage**: the fraction of all fitted voxels whose interval ``estimate ± 1.96·SE`` holds the truth
  (``lsq``: ``<param>_se``, the Jacobian standard error; ``dnn``: ``<param>_sd``, the spread of the
  shipped ensemble of 3 networks, ``--weights builtin``); a voxel without a finite SE (failed fit, singular
  Jacobian) counts as not covered. The target is 90-98 %.
* **bias** and **NRMSE** relative to the mean true value (:func:`qmri.simulate.nrmse_bias`).
* **efficiency**: the median over the parameter sets of CRLB² / variance of the estimates, the CRLB
  evaluated at the true values with the true σ (Gaussian Fisher information, :mod:`qmri.fitting.crlb`).
  Above 1 means a spread below the bound: the estimator is biased (bounds, priors).

Boundary: in-process, ``Model.fit`` on flat arrays (no files). Writes ``benchmarks/results/coverage.md``.

Usage::

    python benchmarks/uncertainty.py [--sets 8] [--repeats 250] [--no-dnn]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "coverage.md"
SNRS = (10, 20, 50)
#: Realistic parameter ranges (within each model's bounds); the amplitude is 1000 ± 10 %.
PRIORS = {
    "IVIM": {"S0": (900, 1100), "f": (0.05, 0.3), "D": (0.5e-3, 2.0e-3), "Dstar": (0.01, 0.08)},
    "ADC": {"S0": (900, 1100), "ADC": (0.5e-3, 2.5e-3)},
    "stretched": {"S0": (900, 1100), "DDC": (0.5e-3, 2.0e-3), "alpha": (0.6, 1.0)},
    "DKI trace": {"S0": (900, 1100), "D": (0.5e-3, 2.0e-3), "K": (0.4, 1.5)},
    "DCE Tofts": {"Ktrans": (0.05, 0.5), "ve": (0.1, 0.5)},
    "DCE ETM": {"Ktrans": (0.05, 0.5), "ve": (0.1, 0.5), "vp": (0.01, 0.1)},
    "VFA T1": {"M0": (900, 1100), "T1": (0.5, 2.0)},
}


def models():
    """``{label: (model, shipped networks exist)}`` on the phantoms' protocols."""
    from qmri.models import ADC, DCE, IVIM, VFA, StretchedExponential, TraceDKI

    out = {}
    for label, cls in (("IVIM", IVIM), ("ADC", ADC), ("stretched", StretchedExponential)):
        out[label] = (cls.for_phantom(cls.phantom(snr=np.inf, block=(1, 1, 1))), True)
    out["DKI trace"] = (TraceDKI([0, 250, 500, 1000, 1500, 2000, 2500]), False)
    ph = DCE.phantom(snr=np.inf, block=(1, 1, 1))
    acq = {k: np.asarray(ph.acquisition[k]) for k in ("times", "aif", "aif_times")}
    out["DCE Tofts"] = (DCE(acq["times"], acq["aif"], "tofts", aif_times=acq["aif_times"]), False)
    out["DCE ETM"] = (DCE(acq["times"], acq["aif"], "etm", aif_times=acq["aif_times"]), False)
    out["VFA T1"] = (VFA([2, 5, 10, 15, 20], 0.005), False)
    return out


def simulate(model, label: str, snr: float, sets: int, repeats: int, index: int):
    """Truth (sets·repeats, n_params), noisy signals, σ per voxel, and the set of each voxel."""
    from qmri.simulate import add_gaussian_noise, add_rician_noise, sample_parameters

    spec = model.spec
    lo, hi = model.lower.copy(), model.upper.copy()
    prior = {k: v for k, v in PRIORS[label].items() if k in spec.names}
    fixed = [k for k in spec.names if k not in prior]
    for k in fixed:  # parameters without a prior (e.g. a delay) are held at 0 or their lower bound
        j = spec.names.index(k)
        lo[j] = hi[j] = max(0.0, lo[j]) if np.isfinite(lo[j]) else 0.0
    P = sample_parameters(spec, sets, np.random.default_rng(0), prior=prior, lower=lo, upper=hi)
    truth = np.repeat(P, repeats, axis=0)
    clean = spec.evaluate(truth, model.acq)
    rng = np.random.default_rng(int(1000 * snr) + index)
    if model.training_noise == "rician":
        amp = truth[:, spec.names.index(model.amplitude)]
        sigma = amp / snr
        noisy = add_rician_noise(clean, sigma[:, None], rng)
    else:
        peak = np.repeat(np.abs(spec.evaluate(P, model.acq)).max(axis=1), repeats)
        sigma = peak / snr
        noisy = add_gaussian_noise(clean, sigma[:, None], rng)
    return truth, noisy, sigma, np.repeat(np.arange(sets), repeats)


def score(model, maps, truth, sigma, groups, interval: str) -> dict:
    """Per parameter: coverage of estimate ± 1.96·interval, bias, NRMSE, efficiency."""
    from qmri.fitting.crlb import crlb
    from qmri.simulate import nrmse_bias

    spec = model.spec
    bound = crlb(spec, model.acq, truth, sigma)
    out = {}
    every = np.ones(truth.shape[0], bool)
    for j, k in enumerate(spec.names):
        if np.ptp(truth[:, j]) == 0 and k not in PRIORS_ANY:
            continue
        est = maps[k]
        half = 1.96 * (maps.se[k] if interval == "se" else maps[f"{k}_sd"])
        covered = np.isfinite(est) & np.isfinite(half) & (np.abs(est - truth[:, j]) <= half)
        nrmse, bias = nrmse_bias(est, truth[:, j], every)
        eff = []
        for g in np.unique(groups):
            e = est[groups == g]
            e = e[np.isfinite(e)]
            if e.size > 2 and np.isfinite(bound[groups == g, j][0]):
                eff.append(bound[groups == g, j][0] ** 2 / np.var(e, ddof=1))
        out[k] = {"coverage": float(np.mean(covered)), "bias": bias, "nrmse": nrmse,
                  "efficiency": float(np.median(eff)) if eff else float("nan"),
                  "fitted": float(np.mean(np.isfinite(est)))}
    return out


PRIORS_ANY = {k for p in PRIORS.values() for k in p}


def run(sets: int, repeats: int, dnn: bool) -> list[dict]:
    rows = []
    for index, (label, (model, shipped)) in enumerate(models().items()):
        for snr in SNRS:
            truth, noisy, sigma, groups = simulate(model, label, snr, sets, repeats, index)
            lsq = "nonlinear" if "nonlinear" in type(model).methods else "lsq"  # VFA's least-squares method
            runs = [(lsq, dict(compute_se=True), "se")]
            if dnn and shipped:
                runs.append(("dnn", dict(weights="builtin"), "sd"))
            for method, opts, interval in runs:
                maps = model.fit(noisy, method=method, **opts)
                for k, r in score(model, maps, truth, sigma, groups, interval).items():
                    rows.append({"model": label, "method": method, "parameter": k, "snr": snr, **r})
            print(f"{label} SNR {snr}: done", flush=True)
    return rows


def markdown(rows, sets: int, repeats: int) -> str:
    lines = ["# Coverage of the 95 % intervals, bias, NRMSE and efficiency", "",
             "Produced by `python benchmarks/uncertainty.py` (see its docstring for the simulation). "
             f"{sets} parameter sets × {repeats} noise realisations per model and SNR "
             "(parameter sets: seed 0; noise: seed 1000·SNR + model index); in-process `Model.fit`. "
             "Coverage: fraction of voxels whose `estimate ± 1.96·SE` holds the truth (`lsq`: `<param>_se`; "
             "`dnn`: `<param>_sd` of the shipped 3-network ensemble); target 90-98 %. Efficiency: median over the "
             "sets of CRLB² / variance (> 1: below the bound, hence biased). Bias and NRMSE relative to the mean "
             "true value.", "",
             "| model | method | parameter | SNR | coverage | bias | NRMSE | efficiency |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        flag = "" if 0.90 <= r["coverage"] <= 0.98 else " ✗"
        lines.append(f"| {r['model']} | {r['method']} | {r['parameter']} | {r['snr']} | "
                     f"{100 * r['coverage']:.1f} %{flag} | {100 * r['bias']:+.1f} % | {r['nrmse']:.3f} | "
                     f"{r['efficiency']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=250)
    ap.add_argument("--no-dnn", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    rows = run(args.sets, args.repeats, not args.no_dnn)
    text = markdown(rows, args.sets, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
