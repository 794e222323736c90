"""The cohort cluster's security tests (``cohort_security_cases.py``), run in a fresh Python process.

In the full suite, after the tests that run before it in the same process, the refused client of
those cases waited without end (seen twice, in ``test_a_client_without_the_run_credentials_is_refused``);
alone, and together with the other cohort tests, they pass in a few seconds. A process of their own
keeps them independent of what earlier tests left behind (threads, event loops, Dask state) and
bounds them in time.
"""

import subprocess
import sys
from pathlib import Path


def test_cohort_cluster_security_cases_pass_in_a_fresh_process():
    cases = Path(__file__).with_name("cohort_security_cases.py")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(cases)],
                       capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "6 passed" in r.stdout, r.stdout[-2000:]
