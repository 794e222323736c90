"""IVIM: ``--method dnn`` as a user gets it (trained on a pilot fit) against IVIM-NET, self-supervised ``dnn`` and ``lsq``.

IVIM's ``dnn`` trains, by default, on signals simulated from a pilot fit of the voxels being fitted
by a self-supervised network (:mod:`qmri.fitting.net.pilot`; ``--training pilot``, the facet's
``pilot="self"``). This measures that call, ``model.fit(data, mask=mask, method="dnn")`` with every
default, beside ``method="dnn", training="self"`` (self-supervised alone, IVIM-NET's way of
training), ``method="lsq"`` and IVIM-NET optim (``ivimnet``, GPL-3.0, run and not copied; optional:
its rows are left out when it is not installed), all on the same voxels in the same run.

Data: ``IVIM.phantom(snr, block, seed=snr, bvals)``: 10 OSIPI tissues, S0 1000, Rician noise at the
case's SNR (S0 / σ), ``block`` voxels per tissue (50×50×4: 100,000 voxels; 16×16×2: 5,120, a
tumour-sized ROI); protocols ``13b`` (the phantom's: 0, 10, 20, 30, 50, 75, 100, 150, 200, 400, 600,
800, 1000 s/mm²) and ``7b`` (0, 20, 50, 100, 200, 400, 800 s/mm²).

Per case and method: NRMSE and bias (relative to the mean truth, ``qmri.simulate.nrmse_bias``) of f,
D and D*, Spearman ρ(D*, f) (the truth's beside it), and the seconds of the whole call (in-process:
``Model.fit`` with training and inference for qmri; ``learn_IVIM`` + ``predict_IVIM`` for IVIM-NET;
torch threads ``--threads`` for both, Numba all cores). Seeds: phantom noise = SNR, training 0.

Usage::

    python benchmarks/ivim_pilot.py [--cases 13b:20:50x50x4 7b:10:50x50x4 13b:20:16x16x2 ...]
                                    [--threads 1] [--no-ivimnet] [--out benchmarks/results/ivim_pilot.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dnn import ivimnet_fit, spearman  # noqa: E402

PROTOCOLS = {"13b": None, "7b": (0.0, 20.0, 50.0, 100.0, 200.0, 400.0, 800.0)}
CASES = ("13b:10:50x50x4", "13b:20:50x50x4", "13b:50:50x50x4", "7b:10:50x50x4", "7b:20:50x50x4",
         "13b:10:16x16x2", "13b:20:16x16x2", "13b:100:50x50x4")
KEYS = ("f", "D", "Dstar")


def run_case(case: str, threads: int, ivimnet: bool):
    import torch

    from qmri.models import IVIM
    from qmri.simulate import nrmse_bias

    protocol, snr, block = case.split(":")
    snr, block = float(snr), tuple(int(v) for v in block.split("x"))
    ph = IVIM.phantom(snr=snr, block=block, seed=int(snr), bvals=PROTOCOLS[protocol])
    model = IVIM.for_phantom(ph)
    mask = ph.mask
    torch.set_num_threads(threads)
    model.fit(ph.data[:2, :2, :1], method="lsq")  # compile / load the Numba cache
    results = {}
    for label, kw in (("lsq", {"method": "lsq"}), ("dnn self-supervised", {"method": "dnn", "training": "self"}),
                      ("dnn (default: pilot)", {"method": "dnn"})):
        t0 = time.perf_counter()
        maps = model.fit(ph.data, mask=mask, **kw)
        results[label] = ({k: maps[k] for k in KEYS}, time.perf_counter() - t0, maps.provenance)
    if ivimnet:
        t0 = time.perf_counter()
        est, _, _, miss = ivimnet_fit(ph.data[mask], np.asarray(ph.acquisition["bvals"]), threads)
        full = {k: np.full(mask.shape, np.nan) for k in KEYS}
        for k in KEYS:
            full[k][mask] = est[k]
        results["IVIM-NET optim"] = (full, time.perf_counter() - t0, {"missing": miss})
    rho_truth = spearman(ph.truth["Dstar"][mask], ph.truth["f"][mask])
    rows = []
    for label, (maps, seconds, prov) in results.items():
        cells = []
        for k in KEYS:
            e, b = nrmse_bias(maps[k], ph.truth[k], mask)
            cells += [e, b]
        note = ""
        if label.startswith("dnn"):
            tr = prov["network_training"]
            note = f"epochs {prov['network_epochs'][0]}"
            if tr["mode"] == "pilot":
                note += (f"; pilot network {tr['pilot_network']['epochs']} epochs; {tr['signals']:,} signals"
                         + (f"; lsq for {', '.join(tr['lsq_for'])}" if tr["lsq_for"] else ""))
        elif "missing" in prov:
            note = f"{100 * prov['missing']:.1f} % voxels left out by its filter"
        rows.append((label, cells, spearman(maps["Dstar"][mask], maps["f"][mask]), seconds, note))
    name = f"{protocol}, SNR {snr:g}, {int(mask.sum()):,} voxels"
    return name, rho_truth, rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), help="PROTOCOL:SNR:XxYxZ (voxels per tissue)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--no-ivimnet", action="store_true", help="leave IVIM-NET out")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    import numba
    import torch

    try:
        import IVIMNET  # noqa: F401
        ivimnet = not args.no_ivimnet
    except ImportError:
        ivimnet = False
        print("IVIM-NET: not installed (pip install ivimnet to add its rows)")
    head = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Numba threads "
            f"{numba.get_num_threads()}, torch {torch.__version__} threads {args.threads}; in-process; seeds: "
            "phantom noise = SNR, training 0")
    lines = ["| case | method | NRMSE f | bias f | NRMSE D | bias D | NRMSE D* | bias D* | ρ(D*,f) | ρ truth | s | "
             "note |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for case in args.cases:
        name, rho_truth, rows = run_case(case, args.threads, ivimnet)
        for label, cells, rho, seconds, note in rows:
            lines.append(f"| {name} | {label} | " + " | ".join(f"{v:+.3f}" if j % 2 else f"{v:.3f}"
                                                              for j, v in enumerate(cells))
                         + f" | {rho:+.3f} | {rho_truth:+.3f} | {seconds:.0f} | {note} |")
        print("\n".join(lines[-len(rows):]), flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text("\n".join([head, ""] + lines) + "\n")
    print("\n".join([head, ""] + lines))


if __name__ == "__main__":
    main()
