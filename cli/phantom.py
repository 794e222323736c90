"""``qmri phantom <command>``: write a model's phantom (digital reference object) with its ground truth."""

from __future__ import annotations

import importlib
from pathlib import Path

from qmri.cli.options import add_options, given
from qmri.options import random_seed, resolve

#: Phantoms that belong to no single model: modules declaring ``PHANTOM_NAME``, ``PHANTOM_HELP``,
#: ``PHANTOM_OPTIONS`` (:class:`qmri.options.Option` tuple) and
#: ``write_phantom(out_dir, *, seed, force, **options) -> str`` (what was written, for the terminal).
OTHER_PHANTOMS = ["qmri.habitats.phantom", "qmri.cohort.example"]


#: One line for ``qmri --help``.
SUMMARY = "write a phantom (digital reference object) with ground truth"


def add_parser(sub):
    from qmri.models import COMMANDS

    p = sub.add_parser("phantom", help=SUMMARY)
    fam = p.add_subparsers(dest="family", metavar="MODEL", required=True)
    for cls in COMMANDS.values():
        if not cls.has_phantom():
            continue
        q = fam.add_parser(cls.command, help=(cls.phantom.__doc__ or cls.cli.summary).strip().splitlines()[0])
        q.add_argument("--out-dir", required=True, type=Path)
        q.add_argument("--snr", type=float, help="S0 (or baseline signal) / sigma of the Rician noise; 'inf' for "
                                                 "noise-free (default: the phantom's)")
        q.add_argument("--seed", type=random_seed, default=0)
        q.add_argument("--block", type=int, nargs=3, metavar=("X", "Y", "Z"), help="voxels per region")
        q.add_argument("--force", action="store_true")
        add_options(q, cls.demo.options)
        q.set_defaults(func=run, model_cls=cls)
    for module in map(importlib.import_module, OTHER_PHANTOMS):
        q = fam.add_parser(module.PHANTOM_NAME, help=module.PHANTOM_HELP)
        q.add_argument("--out-dir", required=True, type=Path)
        q.add_argument("--seed", type=random_seed, default=0)
        q.add_argument("--force", action="store_true")
        add_options(q, module.PHANTOM_OPTIONS)
        q.set_defaults(func=run_other, module=module)
    return p


def run_other(args) -> int:
    m = args.module
    opts = resolve(m.PHANTOM_OPTIONS, given(args, m.PHANTOM_OPTIONS), f"qmri phantom {m.PHANTOM_NAME}")
    print(m.write_phantom(args.out_dir, seed=args.seed, force=args.force, **opts))
    return 0


def run(args) -> int:
    from qmri.simulate import save_phantom

    cls = args.model_cls
    opts = resolve(cls.demo.options, given(args, cls.demo.options), f"qmri phantom {cls.command}")
    ph = cls.phantom(snr=args.snr, seed=args.seed, block=args.block, **{k: v for k, v in opts.items() if v is not None})
    save_phantom(ph, args.out_dir, force=args.force)
    print(f"{cls.__name__} phantom {ph.data.shape} ({int(ph.mask.sum())} voxels, {len(ph.regions)} regions, "
          f"SNR {ph.acquisition['snr']:g}) written to {args.out_dir}: {', '.join(ph.file_names())}")
    if ph.fit_hint:
        print("fit it with: " + ph.fit_hint.format(out=args.out_dir))
    return 0
