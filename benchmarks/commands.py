"""Timing whole commands for the benchmarks: wall time (best of N) and peak memory of each run.

A whole command is what users time: start-up, reading, fitting, maps, writing. Peak resident
memory is the command's own, measured by GNU ``time`` (``/usr/bin/time -f %M``): a child forked by
this (large) Python process would otherwise start its accounting with this process's memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def qmri_script() -> str:
    """The ``qmri`` console script of the running environment."""
    return str(Path(sys.executable).parent / "qmri")


TIME = "/usr/bin/time"


def run(cmd, env=None, expect: int = 0) -> tuple[float, float, int]:
    """Run ``cmd`` once: (wall seconds, peak RSS in MB — NaN without GNU time —, exit code); output
    is discarded. Raises RuntimeError unless the exit code is ``expect``."""
    cmd = [str(c) for c in cmd]
    timed = os.path.exists(TIME)
    full = [TIME, "-f", "%M", "-o", "/dev/stderr"] + cmd if timed else cmd
    t = time.perf_counter()
    proc = subprocess.run(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    seconds = time.perf_counter() - t
    err = proc.stderr.decode(errors="replace").strip()
    rss = float("nan")
    if timed:
        last = err.splitlines()[-1] if err else ""
        rss = float(last) / 1024.0 if last.isdigit() else float("nan")
    if proc.returncode != expect:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err[-500:]}")
    return seconds, rss, proc.returncode


def best_of(cmd, repeat: int = 3, warm: bool = True, env=None, expect: int = 0) -> tuple[float, float]:
    """(best wall seconds over ``repeat`` runs, the largest peak RSS in MB); one untimed run first
    when ``warm`` (file cache, compiled-kernel cache)."""
    if warm:
        run(cmd, env, expect)
    times, rss = [], []
    for _ in range(repeat):
        s, r, _ = run(cmd, env, expect)
        times.append(s)
        rss.append(r)
    return min(times), max(rss)
