"""``qmri demo``: build the phantoms, fit them with every method, print accuracy and speed."""

from __future__ import annotations

import time
from pathlib import Path


def add_parser(sub):
    p = sub.add_parser("demo", help="fit the built-in phantoms with every method; print accuracy and speed")
    p.add_argument("--out-dir", type=Path, default=Path("demo_out"), help="folder for phantoms, maps and PNGs")
    p.add_argument("--force", action="store_true", help="overwrite an earlier demo's files")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from qmri.cli.common import refuse_overwrite
    from qmri.cli.main import FAMILIES, family_modules

    parts = [(name, mod) for name, mod in zip(FAMILIES, family_modules()) if hasattr(mod, "demo_part")]
    refuse_overwrite([args.out_dir / name for name, _ in parts], args.force)
    t0 = time.perf_counter()
    for name, mod in parts:
        t = time.perf_counter()
        table = mod.demo_part(args.out_dir / name, args)
        print(f"== {name.upper()} ({time.perf_counter() - t:.1f} s, including Numba compilation)")
        print(table)
        print()
    print(f"demo finished in {time.perf_counter() - t0:.1f} s; maps and PNGs in {args.out_dir}")
    return 0
