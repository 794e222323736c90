"""Start-up of the ``qmri`` command: how long before it answers, and before it fits its first voxel.

Each row is a whole command (best of ``--repeat`` runs, warm: compiled kernels cached):

* ``qmri --version``, ``qmri --help``, ``qmri ivim --help`` and an argument error (``qmri ivim``
  without arguments): target under 0.3 s;
* ``import qmri`` and ``import qmri.models`` in a fresh interpreter;
* a fitting command on a phantom of one voxel per region (IVIM ``lsq``, ADC ``wls``, DKI ``wls``):
  start-up, reading, a few voxels' fit and writing — an upper bound of the time to the first voxel.

Usage: ``python benchmarks/startup.py [--repeat 5]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from commands import best_of, qmri_script


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    q = qmri_script()
    rows = []

    def row(label, cmd, expect=0):
        s, rss = best_of(cmd, args.repeat, expect=expect)
        rows.append((label, s, rss))
        print(f"{label:<44s} {s:6.3f} s  {rss:6.0f} MB", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        row("qmri --version", [q, "--version"])
        row("qmri --help", [q, "--help"])
        row("qmri ivim --help", [q, "ivim", "--help"])
        row("argument error (qmri ivim)", [q, "ivim"], expect=2)
        row("python -c 'import qmri'", [sys.executable, "-c", "import qmri"])
        row("python -c 'import qmri.models'", [sys.executable, "-c", "import qmri.models; qmri.models.commands()"])
        for name, extra in (("ivim", []), ("adc", []), ("dki", ["--bvec"])):
            ph = tmp / name
            best_of([q, "phantom", name, "--out-dir", ph, "--block", "1", "1", "1", "--force"], 1, warm=False)
            cmd = [q, name, ph / f"{name}.nii.gz", "--bval", ph / f"{name}.bval", "--mask", ph / "mask.nii.gz",
                   "--out-dir", tmp / f"fit_{name}", "--force", "--quiet"]
            if extra:
                cmd += ["--bvec", ph / f"{name}.bvec"]
            row(f"qmri {name}, phantom of one voxel per region", cmd)
    print("\n| command | seconds (best of %d, warm) | peak RSS (MB) |" % args.repeat)
    print("|---|---:|---:|")
    for label, s, rss in rows:
        print(f"| {label} | {s:.3f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
