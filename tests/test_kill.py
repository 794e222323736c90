"""A killed run leaves nothing half done: ``kill -9`` of the installed ``qmri`` script at several
points of a run, then the same command (without ``--force``)."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qmri.cli.main import main

OUT = ["S0", "f", "D", "Dstar", "rmse", "r2", "status", "n_iter"]
SET = sorted([f"p_{n}.nii.gz" for n in OUT] + [f"p_{n}.json" for n in OUT] + ["p_maps.png"])


def stages(folder: Path) -> list[Path]:
    """The hidden staging folders of result sets in ``folder``."""
    return sorted(folder.glob(".qmri-*.partial")) if folder.exists() else []


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def _start(args):
    script = Path(sys.executable).parent / "qmri"
    return subprocess.Popen([str(script), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for(proc, condition, timeout=120.0):
    t0 = time.monotonic()
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"qmri ended (exit {proc.returncode}) before the kill point: {proc.stderr.read()}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError("kill point not reached")
        time.sleep(0.001)


def _written(out: Path, n: int):
    """True once ``n`` files (hidden and staged ones included) exist under ``out``."""
    def cond():
        try:  # the run moves and removes files while we count them
            return out.exists() and sum(1 for p in out.rglob("*") if p.is_file()) >= n
        except FileNotFoundError:
            return False
    return cond


@pytest.mark.slow
def test_kill_9_at_any_point_leaves_nothing_or_the_complete_set(tmp_path):
    ph = tmp_path / "ph"
    assert main(["phantom", "ivim", "--out-dir", str(ph), "--snr", "30", "--block", "6", "6", "2"]) == 0
    out = tmp_path / "out"
    args = ["ivim", ph / "ivim.nii.gz", "--bval", ph / "ivim.bval", "--mask", ph / "mask.nii.gz", "--out-dir", out,
            "--prefix", "p_", "--plot"]
    points = {
        "while starting": lambda proc: time.sleep(0.5),
        "while fitting": lambda proc: proc.stdout.readline(),  # the line announcing the fit
        "as writing starts": lambda proc: _wait_for(proc, _written(out, 1)),
        "half-way through the maps": lambda proc: _wait_for(proc, _written(out, 9)),
        "while drawing the figure": lambda proc: _wait_for(proc, _written(out, 17)),
    }
    complete = False
    for where, reach in points.items():
        proc = _start(args)  # the same command each time, never --force
        reach(proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        files = _visible(out)
        assert files in ([], SET), f"killed {where}: {files}"
        if files == SET:  # the kill came after the set was moved into place
            complete = True
            break
    if not complete:
        proc = _start(args)
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
    assert _visible(out) == SET and stages(out) == []  # a stale stage is removed, never left behind
    proc = _start(args)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "exists" in stderr  # complete: refused without --force


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_while_writing_cleans_up(tmp_path, sig):
    ph = tmp_path / "ph"
    assert main(["phantom", "ivim", "--out-dir", str(ph), "--block", "2", "2", "1"]) == 0
    out = tmp_path / "out"
    proc = _start(["ivim", ph / "ivim.nii.gz", "--bval", ph / "ivim.bval", "--out-dir", out, "--plot"])
    _wait_for(proc, _written(out, 4))
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0:  # the signal came after the set was in place
        assert len(_visible(out)) == 17
    else:
        assert proc.returncode in (130, 128 + signal.SIGTERM), stderr
        assert _visible(out) == [] and stages(out) == []  # nothing left, not even the stage
