"""qmri cohort throughput: subjects per minute on Dask with 1 and 2 local workers, and the overhead of
Dask against a plain serial loop of the same fits.

Data: the example cohort (``qmri phantom cohort``: habitat-phantom subjects, an IVIM series on the
tumour grid and a DCE series twice as coarse in-plane, tumour masks), ``--subjects`` subjects of
``--voxels`` tumour voxels (default 8 x 6,000). Configuration: the example configuration
(``qmri cohort --example-config``) with the IVIM method ``--method`` (default ``lsq``), i.e. per
subject an IVIM fit on the tumour and a Tofts fit on the dilated DCE mask.

In-process, like with like (every run writes the same BIDS-derivative outputs into a fresh folder,
Numba kernels already compiled and cached):

* serial loop: :func:`qmri.workflows.fit_files` per subject and step, one after the other, with every
  core for Numba (what a user's script would do);
* ``run_cohort`` on a local Dask cluster of 1 worker x every core, and of 2 workers x cores/2 (the
  default on 2 cores): cluster start, task submission, every worker process loading qmri and its
  kernels, the fits, the logs, the cluster's shutdown; the start-up alone is also timed.

Whole command: ``qmri cohort BIDS OUT participant`` in a subprocess (interpreter start included),
then the group level (ROI statistics of every map, population habitat model, cohort table).

Each measurement is repeated (``--repeat``, interleaved); the best run and every run are printed.

Run:  python benchmarks/cohort.py [--subjects 8] [--voxels 6000] [--method lsq] [--repeat 3] [--work DIR]
Numbers measured on a loaded shared machine are provisional.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def serial_loop(bids: Path, out: Path, cfg) -> float:
    """The configuration's fits as a plain loop of fit_files calls; seconds."""
    from qmri.cohort.app import fit_task
    from qmri.cohort.dataset import Datasets, participants
    from qmri.workflows.job import run_fit

    ds = Datasets(bids)
    t0 = time.perf_counter()
    for p in participants(bids):
        for step in cfg.fits.values():
            task = fit_task(step, p, ds, out)
            run_fit(task.plan())
    return time.perf_counter() - t0


def cluster_start(workers: int) -> float:
    """Seconds to start and close a local cluster of ``workers`` processes (what run_cohort starts)."""
    from qmri.cohort.engine import connect

    t0 = time.perf_counter()
    with connect(workers=workers) as engine:
        engine.client.run(lambda: 0)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--voxels", type=int, default=6000)
    ap.add_argument("--method", default="lsq", help="IVIM method (lsq or segmented)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement (best and all reported)")
    ap.add_argument("--work", type=Path, help="work folder (default: a temporary one, removed)")
    args = ap.parse_args()

    from qmri.cohort import load_config, run_cohort
    from qmri.cohort.example import EXAMPLE_CONFIG, write_example_dataset
    from qmri.threads import available

    work = args.work or Path(tempfile.mkdtemp(prefix="qmri_cohort_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    bids = work / "bids"
    if bids.exists():
        shutil.rmtree(bids)
    write_example_dataset(bids, subjects=args.subjects, voxels=args.voxels)
    cfg_path = work / "steps.toml"
    cfg_path.write_text(EXAMPLE_CONFIG.replace('method = "segmented"', f'method = "{args.method}"'))
    cfg = load_config(cfg_path)
    n = args.subjects
    print(f"qmri cohort benchmark: {n} subjects x {args.voxels} tumour voxels, IVIM {args.method} + Tofts, "
          f"{available()} cores (provisional if the machine is loaded)")

    def fresh(name):
        out = work / name
        if out.exists():
            shutil.rmtree(out)
        return out

    serial_loop(bids, fresh("warm"), cfg)  # compile (or load) every kernel once, in this process
    logging.getLogger("distributed").setLevel(logging.ERROR)
    script = Path(sys.executable).parent / "qmri"
    times = {}  # name -> list of seconds
    in_tasks = {1: [], 2: []}  # seconds inside the tasks (sum over tasks), per Dask run
    starts = {1: [], 2: []}

    def timed(name, fn):
        t0 = time.perf_counter()
        fn()
        times.setdefault(name, []).append(time.perf_counter() - t0)

    for _ in range(args.repeat):  # interleaved, so that load on the machine spreads over all of them
        timed("serial loop of fit_files (in-process)", lambda: serial_loop(bids, fresh("serial"), cfg))
        for w in (1, 2):
            starts[w].append(cluster_start(w))

            def dask(w=w):
                outcome = run_cohort(bids, fresh(f"dask{w}"), "participant", cfg_path, workers=w)
                assert not outcome.failures, outcome.failure_table()
                in_tasks[w].append(sum(r.seconds for r in outcome.results))

            timed(f"run_cohort, {w} worker process(es) x {max(1, available() // w)} thread(s)", dask)

        def command():
            res = subprocess.run([str(script), "cohort", str(bids), str(fresh("command")), "participant", "--config",
                                  str(cfg_path), "--quiet"], capture_output=True, text=True)
            assert res.returncode == 0, res.stderr

        timed("qmri cohort participant (whole command, default workers)", command)
    t0 = time.perf_counter()
    res = subprocess.run([str(script), "cohort", str(bids), str(work / "command"), "group", "--config", str(cfg_path),
                          "--quiet"], capture_output=True, text=True)
    t_group = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr

    t_serial = min(next(iter(times.values())))
    width = max(map(len, times))
    print(f"\n{'participant level (2 fits per subject)'.ljust(width)}  {'best s':>7}  {'all runs s':>17}  "
          f"{'subjects/min':>12}  vs serial")
    for name, ts in times.items():
        t = min(ts)
        print(f"{name.ljust(width)}  {t:7.2f}  {', '.join(f'{v:.2f}' for v in ts):>17}  {60 * n / t:12.1f}  "
              f"{t_serial / t:8.2f}x")
    d1 = min(times[list(times)[1]]) - t_serial
    print(f"\nDask overhead, 1 worker vs the serial loop (same cores, best runs): {d1:+.2f} s in all, "
          f"{d1 / (2 * n):+.3f} s per task. Starting and closing the local cluster alone: "
          f"{min(starts[1]):.2f} s (1 worker), {min(starts[2]):.2f} s (2 workers); time inside the tasks (sum, best "
          f"run): {min(in_tasks[1]):.2f} s (1 worker), {min(in_tasks[2]):.2f} s (2 workers; the first task of each "
          "worker process loads qmri and its compiled kernels)")
    print(f"group level (ROI statistics, habitat model, cohort table; whole command, once): {t_group:.2f} s")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
