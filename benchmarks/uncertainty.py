"""Are the uncertainties right? Coverage of the 95 % intervals, bias, NRMSE and efficiency (CRLB² / variance).

The simulations are those of the ``coverage`` validation suite (:mod:`qmri.validation.coverage`: phantom
protocols, parameter sets from realistic priors with seed 0, noise of σ = peak signal / SNR with seed
1000·SNR + model index, Rician for magnitude signals and Gaussian for DCE concentrations), with more
voxels: ``--sets`` parameter sets × ``--repeats`` noise realisations per model and SNR (10, 20, 50).

Per method, model, parameter and SNR:

* **coverage** of three intervals, as the fraction of all fitted voxels whose interval holds the truth
  (no finite interval: not covered): ``lsq`` ``estimate ± 1.96·<param>_se`` (the Jacobian standard
  error, as ``--se`` writes it), ``lsq`` ``<param>_lo`` to ``<param>_hi`` (``--interval``: ± t(0.975,
  m − p)·SE), and ``dnn`` ``estimate ± 1.96·<param>_sd`` (the spread of the shipped ensemble of 3 networks,
  ``--weights builtin``; for the models whose phantom protocol has shipped ensembles) and ``dnn
  --interval`` (± 1.96·sqrt(SD² + CRLB²), the bound at the estimate with σ from the residuals). Target
  90-98 %. For IVIM also ``lsq --interval --bootstrap 200`` (percentiles of 200 parametric-bootstrap refits).
* **bias** and **NRMSE** relative to the mean true value (:func:`qmri.simulate.nrmse_bias`).
* **efficiency**: the median over the parameter sets of CRLB² / variance of the estimates, the CRLB
  at the true values with the true σ (Gaussian Fisher information, :mod:`qmri.fitting.crlb`). Above 1
  means a spread below the bound: the estimator is biased (bounds, priors, noise floor).

Boundary: in-process, ``Model.fit`` on flat arrays (no files). Writes ``benchmarks/results/coverage.md``.

Usage::

    python benchmarks/uncertainty.py [--sets 8] [--repeats 250] [--no-dnn]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "coverage.md"


def score(model, label, maps, truth, sigma, groups, interval: str) -> dict:
    """Per parameter: coverage, bias, NRMSE, efficiency."""
    from qmri.fitting.crlb import crlb
    from qmri.simulate import nrmse_bias
    from qmri.validation.coverage import PRIORS, interval_coverage

    spec = model.spec
    bound = crlb(spec, model.acq, truth, sigma)
    out = {}
    every = np.ones(truth.shape[0], bool)
    for j, k in enumerate(spec.names):
        if k not in PRIORS[label]:
            continue
        est = maps[k]
        if interval == "t":
            cov = interval_coverage(est, maps[f"{k}_lo"], maps[f"{k}_hi"], truth[:, j])
        else:
            half = 1.96 * (maps.se[k] if interval == "se" else maps[f"{k}_sd"])
            cov = interval_coverage(est, est - half, est + half, truth[:, j])
        nrmse, bias = nrmse_bias(est, truth[:, j], every)
        eff = []
        for g in np.unique(groups):
            e = est[groups == g]
            e = e[np.isfinite(e)]
            if e.size > 2 and np.isfinite(bound[groups == g, j][0]):
                eff.append(bound[groups == g, j][0] ** 2 / np.var(e, ddof=1))
        out[k] = {"coverage": cov, "bias": bias, "nrmse": nrmse,
                  "efficiency": float(np.median(eff)) if eff else float("nan"),
                  "fitted": float(np.mean(np.isfinite(est)))}
    return out


def run(sets: int, repeats: int, dnn: bool) -> list[dict]:
    from qmri.validation.coverage import BOOTSTRAPPED, SNRS, models, simulate

    rows = []
    for index, (label, (model, lsq, shipped)) in enumerate(models().items()):
        for snr in SNRS:
            truth, noisy, sigma, groups = simulate(model, label, snr, sets, repeats, index)
            fits = [(lsq, model.fit(noisy, method=lsq, compute_se=True, interval=True))]
            if label in BOOTSTRAPPED:
                fits.append(("lsq --bootstrap 200", model.fit(noisy, method=lsq, interval=True, bootstrap=200)))
            if dnn and shipped:
                fits.append(("dnn", model.fit(noisy, method="dnn", weights="builtin", interval=True)))
            for method, maps in fits:
                intervals = {"dnn": ("sd", "t"), "lsq --bootstrap 200": ("t",)}.get(method, ("se", "t"))
                scored = {i: score(model, label, maps, truth, sigma, groups, i) for i in intervals}
                for k, r in scored[intervals[0]].items():
                    row = {"model": label, "method": method, "parameter": k, "snr": snr, **r}
                    if intervals[0] == "t":  # only the --interval maps
                        row["coverage_t"], row["coverage"] = row["coverage"], None
                    elif "t" in scored:
                        row["coverage_t"] = scored["t"][k]["coverage"]
                    rows.append(row)
            print(f"{label} SNR {snr}: done", flush=True)
    return rows


def markdown(rows, sets: int, repeats: int) -> str:
    lines = ["# Coverage of the 95 % intervals, bias, NRMSE and efficiency", "",
             "Produced by `python benchmarks/uncertainty.py` (see its docstring for the simulation). "
             f"{sets} parameter sets × {repeats} noise realisations per model and SNR "
             "(parameter sets: seed 0; noise: seed 1000·SNR + model index); in-process `Model.fit`. "
             "Coverage: fraction of voxels whose interval holds the truth; `± 1.96 SE`: the `<param>_se` maps "
             "(`--se`); `--interval`: `<param>_lo`..`<param>_hi` (`lsq`: ± t(0.975, m-p) SE; `lsq --bootstrap 200`: "
             "percentiles of 200 parametric-bootstrap refits; `dnn`: ± 1.96 sqrt(SD² + CRLB²)); `dnn` ± 1.96 SD: "
             "`<param>_sd` of the shipped 3-network ensemble (`--weights "
             "builtin`). Target 90-98 % (✗ outside). Efficiency: "
             "median over the sets of CRLB² / variance (> 1: spread below the bound, hence biased). Bias and NRMSE "
             "relative to the mean true value.", "",
             "| model | method | parameter | SNR | coverage ± 1.96 SE (SD) | coverage `--interval` | bias | NRMSE | "
             "efficiency |",
             "|---|---|---|---|---|---|---|---|---|"]

    def pct(c):
        return "" if c is None else f"{100 * c:.1f} %" + ("" if 0.90 <= c <= 0.98 else " ✗")

    for r in rows:
        lines.append(f"| {r['model']} | {r['method']} | {r['parameter']} | {r['snr']} | {pct(r['coverage']) or '-'} | "
                     f"{pct(r.get('coverage_t')) or '-'} | {100 * r['bias']:+.1f} % | {r['nrmse']:.3f} | "
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
