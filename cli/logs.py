"""``--verbose`` and ``--log-file``: the command line's messages through :mod:`logging`.

The library reports what it decides on its own (a b-value file found beside the series, a flip
angle read from a sidecar) and warnings through loggers under ``qmri``; a command shows them on
standard error (``qmri <command>: ...``; warnings as ``qmri <command>: warning: ...``) and, with
``--log-file``, also writes them, with time stamps and every detail, to a file. The summary of a
run stays on standard output.
"""

from __future__ import annotations

import contextlib
import logging
import sys

from qmri.errors import QMRIInputError


def add_arguments(group) -> None:
    """``--verbose`` and ``--log-file`` (the group has ``--quiet`` already or gets it elsewhere)."""
    group.add_argument("--verbose", action="store_true", help="also show details on standard error (debug level)")
    group.add_argument("--log-file", metavar="FILE", help="also append every message, time-stamped, to FILE")


class _Console(logging.Formatter):
    def __init__(self, prog: str):
        super().__init__()
        self.prog = prog

    def format(self, record):
        tag = "warning: " if record.levelno == logging.WARNING else "error: " if record.levelno >= logging.ERROR else ""
        return f"{self.prog}: {tag}{record.getMessage()}"


@contextlib.contextmanager
def session(args, prog: str):
    """Route the ``qmri`` loggers to standard error (level: warnings with ``--quiet``, debug with
    ``--verbose``, else info) and to ``--log-file`` (debug) while the command runs; restore after."""
    logger = logging.getLogger("qmri")
    verbose, quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    console.setFormatter(_Console(prog))
    handlers = [console]
    log_file = getattr(args, "log_file", None)
    if log_file:
        try:
            to_file = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise QMRIInputError(f"--log-file {log_file}: cannot open ({exc.strerror})") from None
        to_file.setLevel(logging.DEBUG)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(to_file)
    old_level, old_propagate = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for h in handlers:
        logger.addHandler(h)
    try:
        if log_file:
            logger.debug("%s started", prog)
        yield logger
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(old_level)
        logger.propagate = old_propagate
