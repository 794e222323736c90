"""``qmri demo``: build the built-in phantoms, fit them with every method, print accuracy and speed; end with
the habitat analysis of maps fitted to the habitat phantom."""

from __future__ import annotations

import time
from pathlib import Path


#: One line for ``qmri --help``.
SUMMARY = "fit the built-in phantoms with every method; print accuracy and speed"


def add_parser(sub):
    p = sub.add_parser("demo", help=SUMMARY)
    p.add_argument("--out-dir", type=Path, default=Path("demo_out"), help="folder for phantoms, maps and PNGs")
    p.add_argument("--force", action="store_true", help="replace an earlier demo's folders (OUT/ivim, ..., "
                   "OUT/habitat), each whole")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from qmri.models import COMMANDS
    from qmri.workflows.demo import demo_part
    from qmri.resultset import refuse_existing, replacing_folder
    from qmri.workflows.habitat_demo import demo_habitats

    parts = [cls for cls in COMMANDS.values() if cls.has_phantom()]
    refuse_existing([args.out_dir / cls.command for cls in parts] + [args.out_dir / "habitat"], args.force,
                    folders=True)
    t0 = time.perf_counter()
    # each part's folder appears whole or not at all (a failed or killed part leaves the earlier one)
    for cls in parts:
        t = time.perf_counter()
        with replacing_folder(args.out_dir / cls.command, force=args.force) as out:
            table = demo_part(cls, out)
        print(f"== {cls.command.upper()} ({time.perf_counter() - t:.1f} s, including Numba compilation)")
        print(table)
        print()
    t = time.perf_counter()
    with replacing_folder(args.out_dir / "habitat", force=args.force) as out:
        table = demo_habitats(out)
    print(f"== HABITAT ({time.perf_counter() - t:.1f} s, phantom, IVIM and DCE fits, habitats)")
    print(table)
    print()
    print(f"demo finished in {time.perf_counter() - t0:.1f} s; maps and PNGs in {args.out_dir}")
    return 0
