"""Declared options: one description of a keyword that Python calls and the command line share.

An :class:`Option` is declared once, where it is used: by a fitting method (``compute_se``), by a
model (``threshold``, ``preset``), or by a workflow that reads files (``bval``, ``aif``). Python
callers pass it as a keyword; the command line makes a flag of it (``--se``, ``--threshold``), with
its help, type, default and choices, and :func:`resolve` checks the values given either way.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from qmri.errors import QMRIInputError


@dataclass(frozen=True)
class Option:
    """One declared keyword.

    Attributes
    ----------
    name : str
        Python keyword (``compute_se``, ``threshold``).
    help : str
        One line, with units.
    type : callable
        Converts a command-line string or a Python value to the value: ``float``, ``int``, ``str``,
        ``bool`` (a flag without value), ``Path`` (checked as :meth:`convert` says) or any function
        of the string or value raising ``QMRIInputError`` / ``ValueError``.
    default : Any
        Value when not given (also shown in ``--help``).
    choices : tuple
        Allowed values (empty: any).
    flag : str
        Command-line flag; default ``--`` + name with ``_`` as ``-``.
    required : bool
        Must be given (command line).
    group : str
        Options sharing a non-empty group are mutually exclusive on the command line.
    metavar : str
        Placeholder in ``--help``.
    paths : callable, optional
        For a value that may name files although its type is not ``Path`` (``--aif parker|FILE.csv|
        roi:MASK``): ``paths(value, folder) -> value`` with those files made absolute against
        ``folder`` (:meth:`relative_to`).
    """

    name: str
    help: str
    type: Callable = str
    default: Any = None
    choices: tuple = ()
    flag: str = ""
    required: bool = False
    group: str = ""
    metavar: str = ""
    paths: Callable | None = None

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def is_switch(self) -> bool:
        """A flag without value (``type`` is ``bool``)."""
        return self.type is bool

    def convert(self, value, where: str | None = None):
        """Convert a command-line string or a Python value (e.g. from a TOML file) and check the type
        and the choices.

        By ``type``: ``bool`` takes True/False, 1/0 or the text true/false, yes/no, on/off, 1/0; ``int`` an
        integer or its text (not 2.5, not True); ``float`` a finite number or its text (not True,
        not a list); ``str`` text; ``Path`` a path or text; any other function is called with the
        value, text or not.

        Parameters
        ----------
        value
        where : str, optional
            Names the option in the error (default its flag, e.g. ``--threshold``).

        Raises
        ------
        QMRIInputError
            The value is not of the declared type, cannot be converted or is not one of the choices.
        """
        if value is None:
            return None
        where = where or self.cli_flag
        convert = _CONVERTERS.get(self.type, self.type)
        try:
            value = convert(value)
        except QMRIInputError as exc:
            raise QMRIInputError(f"{where}: {exc}") from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise QMRIInputError(f"{where}: cannot use {value!r} ({exc})") from None
        if self.choices and value not in self.choices:
            raise QMRIInputError(f"{where}: {value!r} is not one of {', '.join(map(str, self.choices))}")
        return value

    def relative_to(self, value, folder):
        """``value`` with the file paths it names made absolute against ``folder`` (a cohort
        configuration's folder): ``Path`` options, and options that declare ``paths``; others as they are."""
        if value is None:
            return None
        if self.type is Path:
            return str((Path(folder) / Path(value).expanduser()).resolve())
        if self.paths is not None:
            return self.paths(value, Path(folder))
        return value


def switch(value) -> bool:
    """A yes/no value: a bool, the integer 1 or 0, or the text true/false, yes/no, on/off, 1/0 (any case).

    Raises
    ------
    QMRIInputError
        Anything else (``bool("false")`` would be True: never used).
    """
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise QMRIInputError(f"expected true or false, got {value!r}")


def integer(value) -> int:
    """An integer, or its text (``"3"``); not a bool, not a fraction.

    Raises
    ------
    QMRIInputError
        Anything else.
    """
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise QMRIInputError(f"expected an integer, got {value!r}") from None
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    raise QMRIInputError(f"expected an integer, got {value!r}")


def number(value) -> float:
    """A finite number, or its text (``"0.5"``); not a bool, not a list.

    Raises
    ------
    QMRIInputError
        Anything else, or a value that is not finite (nan, inf, 1e400).
    """
    if isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            raise QMRIInputError(f"expected a number, got {value!r}") from None
    elif isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        out = float(value)
    else:
        raise QMRIInputError(f"expected a number, got {value!r}")
    if not np.isfinite(out):
        raise QMRIInputError(f"expected a finite number, got {value!r}")
    return out


def text(value) -> str:
    """Text as it is (a path as its text).

    Raises
    ------
    QMRIInputError
        Not text (a number, a bool, a list...).
    """
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if not isinstance(value, str):
        raise QMRIInputError(f"expected text, got {value!r}")
    return value


def path(value) -> Path:
    """A path, or its text.

    Raises
    ------
    QMRIInputError
        Neither.
    """
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    raise QMRIInputError(f"expected a file path, got {value!r}")


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_CONVERTERS = {bool: switch, int: integer, float: number, str: text, Path: path}


def resolve(options: tuple[Option, ...], given: dict, owner: str, others: tuple[Option, ...] = (),
            where=None) -> dict:
    """Every declared option's value: those ``given`` (converted and checked), defaults for the rest.

    Parameters
    ----------
    options : tuple of Option
        What ``owner`` accepts.
    given : dict
        Keyword values passed by the caller.
    owner : str
        Named in the error, e.g. ``"method 'segmented' of IVIM"``.
    others : tuple of Option
        Options declared elsewhere (e.g. by the model's other methods), to name their flag in the error.
    where : callable, optional
        ``where(name)``: how a bad value's error names the option (:meth:`Option.convert`; default
        its flag), e.g. a key of a configuration file.

    Raises
    ------
    QMRIInputError
        A keyword that ``owner`` does not use (it is never silently ignored), or a bad value.
    """
    known = {o.name: o for o in options}
    unknown = [k for k in given if k not in known]
    if unknown:
        accepted = ", ".join(f"{o.name} ({o.cli_flag})" for o in options) or "no options"
        flag = next((o.cli_flag for o in others if o.name == unknown[0]), "--" + unknown[0].replace("_", "-"))
        raise QMRIInputError(f"{owner} does not use option {unknown[0]!r} ({flag}); it accepts {accepted}")
    out = {o.name: o.default for o in options}
    for k, v in given.items():
        out[k] = known[k].convert(v, None if where is None else where(k))
    return out


#: Largest random seed: NumPy takes any non-negative integer, scikit-learn (the habitat clustering)
#: at most 2**32 - 1.
MAX_SEED = 2 ** 32 - 1


def random_seed(text) -> int:
    """A random seed (``--seed``): an integer from 0 to :data:`MAX_SEED`.

    Raises
    ------
    QMRIInputError
        Not an integer, negative or above :data:`MAX_SEED`.
    """
    value = int(text)
    if not 0 <= value <= MAX_SEED:
        raise QMRIInputError(f"a seed is an integer from 0 to {MAX_SEED}, got {value}")
    return value


def float_list(text):
    """``"2,5,10"`` → array([2., 5., 10.]) (also accepts a sequence of numbers).

    Raises
    ------
    QMRIInputError
        Not comma-separated finite numbers.
    """
    if not isinstance(text, str):
        values = np.atleast_1d(np.asarray(text, dtype=np.float64))
    else:
        try:
            values = np.array([float(v) for v in text.replace(" ", "").split(",") if v != ""])
        except ValueError:
            raise QMRIInputError(f"expected comma-separated numbers, got {text!r}") from None
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise QMRIInputError(f"expected comma-separated finite numbers, got {text!r}")
    return values
