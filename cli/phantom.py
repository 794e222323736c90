"""``qmri phantom <family>``: write a digital reference object with its ground truth."""

from __future__ import annotations


def add_parser(sub):
    from qmri.cli.main import family_modules

    p = sub.add_parser("phantom", help="write a phantom (digital reference object) with ground truth")
    fam = p.add_subparsers(dest="family", metavar="FAMILY", required=True)
    for mod in family_modules():
        if hasattr(mod, "add_phantom_parser"):
            mod.add_phantom_parser(fam)
    return p
