"""Declared options: one description of a keyword that Python calls and the command line share.

An :class:`Option` is declared once, where it is used: by a fitting method (``compute_se``), by a
model (``threshold``, ``preset``), or by a workflow that reads files (``bval``, ``aif``). Python
callers pass it as a keyword; the command line makes a flag of it (``--se``, ``--threshold``), with
its help, type, default and choices, and :func:`resolve` checks the values given either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

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
        Converts a command-line string to the value: ``float``, ``int``, ``str``, ``bool`` (a flag
        without value), ``Path`` or any function raising ``QMRIInputError`` / ``ValueError``.
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

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def is_switch(self) -> bool:
        """A flag without value (``type`` is ``bool``)."""
        return self.type is bool

    def convert(self, value):
        """Convert a command-line string (or a Python value) and check the choices.

        Raises
        ------
        QMRIInputError
            The value cannot be converted or is not one of the choices.
        """
        if value is None:
            return None
        if self.is_switch:
            value = bool(value)
        elif isinstance(value, str) and self.type not in (str,):
            try:
                value = self.type(value)
            except QMRIInputError as exc:
                raise QMRIInputError(f"{self.cli_flag}: {exc}") from None
            except (TypeError, ValueError) as exc:
                raise QMRIInputError(f"{self.cli_flag}: cannot use {value!r} ({exc})") from None
        if self.choices and value not in self.choices:
            raise QMRIInputError(f"{self.cli_flag}: {value!r} is not one of {', '.join(map(str, self.choices))}")
        return value


def resolve(options: tuple[Option, ...], given: dict, owner: str, others: tuple[Option, ...] = ()) -> dict:
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
        out[k] = known[k].convert(v)
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
    import numpy as np

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
