"""``qmri`` console script: one fitting subcommand per model declaration, plus ``habitat``, ``phantom`` and ``demo``.

The fitting subcommands are generated (:mod:`qmri.cli.fit`) from :data:`qmri.models.COMMANDS`:
adding a model module registers its command, phantom and demo part; nothing here names a model.
"""

from __future__ import annotations

import importlib
import sys

from qmri import __version__
from qmri.cli.options import Parser
from qmri.errors import QMRIInputError

#: Commands other than the fitting commands (each module has ``add_parser``), after them in ``--help``.
COMMANDS = ["habitat", "stats", "plot_fit", "phantom", "demo"]


def build_parser() -> Parser:
    from qmri.cli import fit
    from qmri.models import COMMANDS as MODELS

    parser = Parser(prog="qmri", description="Quantitative functional MRI: voxel-wise IVIM, ADC, DKI, T1 and DCE "
                                             "fitting of NIfTI series.")
    parser.add_argument("--version", action="version", version=f"qmri {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for cls in MODELS.values():
        fit.add_parser(sub, cls)
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
