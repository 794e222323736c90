"""DCE: ``--method dnn`` as a user gets it (trained on a least-squares pilot fit) against ``lsq``, on the same voxels.

Since DCE's ``dnn`` trains, by default, on signals simulated from a least-squares pilot fit of the
voxels being fitted (:mod:`qmri.fitting.net.pilot`; ``--training pilot``), this measures that call,
``model.fit(conc, mask=mask, method="dnn")`` with every default, beside ``model.fit(..., method="lsq")``.

Data: the DCE phantom ``dce_phantom(snr, block=(20, 20, 1), seed=snr)`` (Ktrans × ve patches, vp 0 /
0.02 / 0.05 slices, Parker AIF, SPGR signal with Rician noise, concentration recomputed from it; 2 s
frames, subsampled to the case's interval after the conversion, so that the baseline stays the 10
pre-contrast frames). Tofts on the vp = 0 slice (8,000 voxels), extended Tofts on all (24,000). For
``+ delay`` the model is given the AIF 3 s early and fits the delay (truth +3 s).

Per case and parameter: NRMSE and bias (relative to the mean truth, ``qmri.simulate.nrmse_bias``) of
both methods and their ratio; the seconds of each whole ``Model.fit`` call (in-process; torch
threads ``--threads``, Numba all cores). The AIF is the fit's own, so no network was trained
on another AIF: each fit trains its networks for its AIF and frame times.

Usage::

    python benchmarks/dce_pilot.py [--cases tofts:10:4 etm:5:6 tofts+delay:10:4 ...] [--threads 2]
                                   [--out benchmarks/results/dce_pilot.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

CASES = ("tofts:5:4", "tofts:5:6", "tofts:10:4", "tofts:10:6", "tofts:20:2", "etm:5:6", "etm:10:4", "etm:20:2",
         "tofts+delay:10:4", "etm+delay:10:4")


def run_case(case: str):
    from qmri.models import DCE
    from qmri.models.dce.aif import shift
    from qmri.models.dce.phantom import dce_phantom
    from qmri.simulate import nrmse_bias

    name, snr, interval = case.split(":")
    kind, delay = name.replace("+delay", ""), name.endswith("+delay")
    snr, interval = float(snr), float(interval)
    ph = dce_phantom(snr=snr, block=(20, 20, 1), seed=int(snr))
    k = int(round(interval / 2.0))
    t = np.asarray(ph.acquisition["times"])[::k]
    ta, cp = np.asarray(ph.acquisition["aif_times"]), np.asarray(ph.acquisition["aif"])
    model = DCE(t, shift(ta, cp, -3.0) if delay else cp, kind, fit_delay=delay, aif_times=ta)
    conc = np.ascontiguousarray(ph.images["dce_conc"][..., ::k])
    mask = ph.mask & (ph.truth["vp"] == 0) if kind == "tofts" else ph.mask
    keys = ["Ktrans", "ve"] + (["vp"] if kind == "etm" else [])
    out = {}
    for method in ("lsq", "dnn"):
        t0 = time.perf_counter()
        maps = model.fit(conc, mask=mask, method=method)
        out[method] = (maps, time.perf_counter() - t0)
    every = np.ones(int(mask.sum()), bool)
    rows = []
    for key in keys:
        (e1, b1), (e2, b2) = (nrmse_bias(np.asarray(out[m][0][key])[mask], ph.truth[key][mask], every)
                              for m in ("lsq", "dnn"))
        rows.append((key, e1, b1, e2, b2))
    if delay:
        for m in ("lsq", "dnn"):
            d = np.asarray(out[m][0]["delay"])[mask] - 3.0
            rows.append((f"delay ({m}: bias {np.mean(d):+.2f} s, RMSE {np.sqrt(np.mean(d ** 2)):.2f} s)",))
    rec = out["dnn"][0].provenance["network_training"]
    epochs = out["dnn"][0].provenance["network_epochs"]
    return {"case": f"{kind}{' + delay' if delay else ''}, SNR {snr:g}, {interval:g} s frames", "n": int(mask.sum()),
            "rows": rows, "lsq_s": out["lsq"][1], "dnn_s": out["dnn"][1], "epochs": epochs, "signals": rec["signals"],
            "pilot": rec["pilot_voxels"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), help="MODEL[+delay]:SNR:INTERVAL_S")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    import numba
    import torch

    torch.set_num_threads(args.threads)
    head = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Numba threads "
            f"{numba.get_num_threads()}, torch {torch.__version__} threads {args.threads}; in-process, seeds: "
            "phantom noise = SNR, training 0")
    lines = ["# DCE: `--method dnn` (trained on a least-squares pilot fit) against `lsq`", "",
             "Made by `python benchmarks/dce_pilot.py --out benchmarks/results/dce_pilot.md` (the data, the "
             "boundary and the seeds are in its docstring). " + head, "",
             "| case | voxels | parameter | lsq NRMSE | lsq bias | dnn NRMSE | dnn bias | dnn/lsq | lsq s | dnn s |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for case in args.cases:
        r = run_case(case)
        for row in r["rows"]:
            if len(row) == 1:
                notes.append(f"{r['case']}: {row[0]}")
                continue
            key, e1, b1, e2, b2 = row
            lines.append(f"| {r['case']} | {r['n']} | {key} | {e1:.4f} | {b1:+.4f} | {e2:.4f} | {b2:+.4f} | "
                         f"{e2 / e1:.3f} | {r['lsq_s']:.2f} | {r['dnn_s']:.0f} |")
        notes.append(f"{r['case']}: pilot of {r['pilot']} voxels, {r['signals']} signals, {r['epochs'][0]} epochs")
        print("\n".join(lines[-len(r["rows"]):]), flush=True)
    text = "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
