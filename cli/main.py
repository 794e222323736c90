"""``qmri`` console script: one fitting subcommand per model declaration, plus the commands of :data:`COMMANDS`.

The fitting subcommands are generated (:mod:`qmri.cli.fit`) from the model registry
(:data:`qmri.models.MODULES`): adding a model module registers its command, phantom and demo part;
nothing here names a model.

Start-up is kept short: ``qmri --version`` imports nothing but qmri's version; a command line that
names a command builds that command's parser only (``qmri ivim ...`` imports the IVIM module, not
the others); only ``qmri``, ``qmri --help`` and an unknown command list every command, with its
one-line summary.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from qmri import __version__
from qmri.cli.options import Parser
from qmri.errors import QMRIInputError

#: Commands other than the fitting commands, after them in ``--help``: modules of this package with
#: ``add_parser(subparsers)`` and a one-line ``SUMMARY``; the command is the module name with ``-``.
COMMANDS = ["train", "habitat", "predict", "stats", "plot_fit", "cohort", "phantom", "demo", "validate"]
DESCRIPTION = "Quantitative functional MRI: voxel-wise IVIM, ADC, DKI, T1 and DCE fitting of NIfTI series."


def _models():
    from qmri.models import MODULES

    return MODULES


def _command(module: str) -> str:
    return module.replace("_", "-")


def command_named(argv) -> str | None:
    """The command an argument list names (its first positional argument), if it is one."""
    for token in argv:
        if not token.startswith("-"):
            known = token in _models() or token in {_command(m) for m in COMMANDS}
            return token if known else None
    return None


def build_parser(only: str | None = None) -> Parser:
    """The parser of every command, fully built for ``only`` (or, without it, every command listed with
    its summary, for ``--help`` and errors)."""
    from qmri.cli import fit
    from qmri.models import command

    parser = Parser(prog="qmri", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"qmri {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for name in _models():
        if only == name:
            fit.add_parser(sub, command(name))
        elif only is None:
            sub.add_parser(name, help=command(name).cli.summary)
    for name in COMMANDS:
        module = importlib.import_module(f"qmri.cli.{name}")
        if only == _command(name):
            module.add_parser(sub)
        elif only is None:
            sub.add_parser(_command(name), help=module.SUMMARY)
    if only is not None:
        _add_threads(sub.choices[only])
    return parser


def leaf_parser(parser, args):
    """The parser of the (sub)command that ``args`` ran (``qmri phantom ivim``: that one's)."""
    while True:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        chosen = getattr(args, actions[0].dest, None) if actions else None
        if chosen is None or chosen not in actions[0].choices:
            return parser
        parser = actions[0].choices[chosen]


def _add_threads(parser) -> None:
    """``--threads N`` on every command that runs (the leaves of the command tree)."""
    children = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not children:
        parser.add_argument("--threads", type=int, metavar="N",
                            help="threads for the compute libraries (Numba, BLAS, torch) and for writing files, "
                                 "at most the cores this process may use (default: every core)")
        return
    for action in children:
        for child in action.choices.values():
            _add_threads(child)


def main(argv=None) -> int:
    """Run the command line; returns the exit code (0 success, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:
        print(f"qmri {__version__}")
        return 0
    parser = build_parser(command_named(argv))
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command that was given, so its --help is the one named
        leaf_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if getattr(args, "threads", None) is not None and not getattr(args, "threads_per_task", False):
            from qmri.threads import set_threads

            set_threads(args.threads)
        return int(args.func(args) or 0)
    except QMRIInputError as exc:
        print(f"qmri: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # the file system, not the program, is at fault (disk full, read-only file system, a path
        # through a file, no permission) outside the result sets' own checks: one line, exit 2
        from qmri.resultset import WRITE_ERRNOS

        if exc.errno not in WRITE_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename is not None else ""
        print(f"qmri: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qmri: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
