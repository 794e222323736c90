"""The cohort cluster's security tests (``cohort_security_cases.py``), run in a fresh Python process.

A process of their own keeps them independent of what earlier tests leave behind (threads, event
loops, Dask state) and bounds them in time: they take 3-12 s (alone, in the full suite, and with two
CPU-bound processes beside them); 120 s without an answer is a failure. (The waits once seen here most likely
came from a DCE fuzz case that filled the machine's memory in a concurrent run; that input is now
refused.)
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_cohort_cluster_security_cases_pass_in_a_fresh_process():
    cases = Path(__file__).with_name("cohort_security_cases.py")
    env = {k: os.environ[k] for k in ("PATH", "HOME", "PYTHONPATH", "LANG") if k in os.environ}
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(cases)],
                           capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1], env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the cohort security cases gave no answer within 120 s:\n{(exc.stdout or b'')[-2000:]!r}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "6 passed" in r.stdout, r.stdout[-2000:]
