"""Declared options (:class:`qmri.options.Option`) as argparse arguments, and the parser every command uses.

Values stay strings here: the library converts and checks them (:meth:`qmri.options.Option.convert`),
so a bad value gets the same one-line error from Python and from the command line. An option not
given on the command line is absent from the parsed namespace (the library's default applies).
"""

from __future__ import annotations

import argparse
import sys


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``qmri: error: <message> (see 'qmri ... --help')``, exit code 2, and
    no abbreviated flags (``--se`` is ``--se``, never a prefix of ``--seed``); subcommand parsers are
    of this class too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        print(f"qmri: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


def add_options(parser, options, *, title: str | None = None) -> None:
    """Add each option as a flag (mutually exclusive where they share a ``group``).

    A ``bool`` option becomes a switch; the others take one value. Nothing is added to the
    namespace unless given (``argparse.SUPPRESS``).
    """
    target = parser.add_argument_group(title) if title else parser
    groups = {}
    for opt in options:
        where = target
        if opt.group:
            if opt.group not in groups:
                required = any(o.required for o in options if o.group == opt.group)
                groups[opt.group] = target.add_mutually_exclusive_group(required=required)
            where = groups[opt.group]
        kwargs = {"dest": opt.name, "default": argparse.SUPPRESS, "help": _help(opt)}
        if opt.is_switch:
            kwargs["action"] = "store_true"
        else:
            if opt.choices:
                kwargs["choices"] = [str(c) for c in opt.choices]
            if opt.metavar:
                kwargs["metavar"] = opt.metavar
            if opt.required and not opt.group:
                kwargs["required"] = True
        where.add_argument(opt.cli_flag, **kwargs)


def given(args, options) -> dict:
    """``{name: value}`` of the ``options`` given on the command line."""
    ns = vars(args)
    return {o.name: ns[o.name] for o in options if o.name in ns}


def _help(opt) -> str:
    text = opt.help
    if opt.default is not None and not opt.is_switch and "default" not in text:
        text += f" (default {opt.default})"
    return text.replace("%", "%%")
