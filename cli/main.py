"""``qmri`` console script: one sub-command per model family plus ``phantom`` and ``demo``.

Each family module in this package (``ivim``, ...) exposes ``add_parser(subparsers)`` for its
fitting command and, optionally, ``add_phantom_parser(subparsers)`` (``qmri phantom <family>``)
and ``demo_part(out_dir, args)`` (a section of ``qmri demo``). Adding a family means adding its
module name to :data:`FAMILIES`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from qmri import __version__
from qmri.errors import QMRIInputError

#: Family modules, in the order they appear in ``qmri --help``, ``qmri phantom`` and ``qmri demo``.
FAMILIES = ["ivim", "dki", "dce"]
#: Other command modules (each with ``add_parser``).
COMMANDS = ["t1", "phantom", "demo"]


def family_modules():
    """The imported modules named in :data:`FAMILIES`, in order."""
    return [importlib.import_module(f"qmri.cli.{name}") for name in FAMILIES]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qmri",
        description="Quantitative functional MRI: voxel-wise IVIM, DKI and DCE fitting of NIfTI series.")
    parser.add_argument("--version", action="version", version=f"qmri {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in family_modules():
        mod.add_parser(sub)
    for name in COMMANDS:
        importlib.import_module(f"qmri.cli.{name}").add_parser(sub)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit code (0 success, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except QMRIInputError as exc:
        print(f"qmri: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qmri: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
