"""Inference throughput of the ``dnn`` method: the IVIM networks shipped with qmri (``--weights builtin``,
``qmri/fitting/net/pretrained/ivim.pt``: an ensemble of 3 per-parameter networks, 13 b-values).

Data: the voxels of ``IVIM.phantom`` (10 OSIPI tissues, SNR 20, seed 1, 100,000 voxels) repeated to
``--voxels``, float64, one voxel per row. Timed in-process, warm (a first call before the timings),
with ``torch.set_num_threads(--threads)``; each figure is the median of ``--repeats`` runs, wall-clock
and CPU (process) seconds. Two boundaries:

``forward``
    The networks alone (:func:`qmri.fitting.net.training.predict` on inputs prepared beforehand:
    normalised float32 signals in, (n_networks, n, n_params) float64 parameters out), stacked
    (:class:`qmri.fitting.net.networks.Stacked`, the default) and network by network
    (``stacked=False``), for each ``--batch``.
``fit``
    The whole ``model.fit(data, method="dnn", weights="builtin")`` call on a (n, 1, 1, 13) array:
    loading and checking the weights, normalisation, the networks, the ensemble mean and SD,
    the decoded signal's rmse and r2, the maps.

Also the largest difference between the stacked and the network-by-network estimates.

Usage::

    python benchmarks/dnn_speed.py [--voxels 500000] [--threads 2] [--device cpu] [--repeats 5]
                                   [--batch 16384 65536] [--out benchmarks/results/dnn.md]

With ``--device cuda`` the networks run on the GPU (the signals are normalised on the CPU and sent
batch by batch; the estimates come back to the CPU); the heading names the device.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

HEADING = "## Inference throughput (benchmarks/dnn_speed.py)"


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn()`` over ``repeats`` runs (after one untimed run)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return float(np.median(wall)), float(np.median(cpu))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--voxels", type=int, default=500_000)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the networks run (default cpu)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, nargs="+", default=None, help="inference batches (default the library's)")
    ap.add_argument("--out", type=Path, help="also write the table as a section of this file (e.g. "
                    "benchmarks/results/dnn.md): appended, or replacing that section of an earlier run")
    ap.add_argument("--note", default="", help="a line written under the table (e.g. a figure of another version)")
    args = ap.parse_args(argv)
    import torch

    from qmri.fitting.net.data import voxel_inputs
    from qmri.fitting.net.training import PREDICT_BATCH, predict
    from qmri.fitting.net.weights import load
    from qmri.models import IVIM

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    ph = IVIM.phantom(snr=20, seed=1)
    model = IVIM.for_phantom(ph)
    base = np.asarray(ph.data[ph.mask], dtype=np.float64)
    Y = np.resize(base, (args.voxels, base.shape[1]))
    n = Y.shape[0]
    trained = load("builtin", model)
    inputs, _, _ = voxel_inputs(model, Y, None)
    rows = []

    def row(boundary, how, batch, wall, cpu):
        rows.append((boundary, how, batch, wall, cpu))
        print(f"{boundary} {how} batch {batch}: {n / wall:,.0f} vox/s ({wall:.3f} s wall, {cpu:.3f} s CPU)", flush=True)

    for batch in args.batch or [PREDICT_BATCH]:
        for how, stacked in (("stacked", True), ("network by network", False)):
            row("forward", how, batch, *timed(lambda: predict(trained.networks, inputs, args.device, batch=batch,
                                                                  stacked=stacked),
                                              args.repeats))
    plain = predict(trained.networks, inputs, args.device, stacked=False)
    diff = np.abs(predict(trained.networks, inputs, args.device) - plain).max(axis=(0, 1))
    span = np.asarray(trained.networks[0].span, dtype=np.float64)
    data = Y.reshape(n, 1, 1, -1)
    row("fit", "model.fit(method='dnn', weights='builtin')", PREDICT_BATCH,
        *timed(lambda: model.fit(data, method="dnn", weights="builtin", device=args.device), args.repeats))
    where = (f"networks on {torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), " if args.device == "cuda"
             else "")
    head = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other jobs), torch "
            f"{torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), {where}{args.threads} torch threads; "
            f"{n:,} IVIM voxels (13 b-values), {trained.n_networks} networks (builtin ivim.pt); median of "
            f"{args.repeats} runs, warm; load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")
    heading = HEADING if args.device == "cpu" else f"{HEADING[:-1]} --device {args.device})"
    lines = [heading, "", head, "", "| boundary | how | batch | vox/s | wall s | CPU s |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {b} | {h} | {bt} | {n / w:,.0f} | {w:.3f} | {c:.3f} |" for b, h, bt, w, c in rows]
    lines += ["", "Largest |stacked − network by network| per parameter: "
              + ", ".join(f"{k} {d:.2g} ({d / s:.1g} of its range)" for k, d, s in zip(model.spec.names, diff, span))]
    if args.note:
        lines += ["", args.note]
    text = "\n".join(lines)
    print(text)
    if args.out:
        old = args.out.read_text() if args.out.exists() else ""
        before, after = old, ""
        if heading + "\n" in old:  # replace this section only, keep the sections after it
            at = old.index(heading + "\n")
            before, rest = old[:at], old[at + len(heading):]
            after = rest[rest.index("\n## ") + 1:] if "\n## " in rest else ""
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text((before.rstrip() + "\n\n" if before.strip() else "") + text + "\n"
                            + ("\n" + after if after else ""))


if __name__ == "__main__":
    main()
