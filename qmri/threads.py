"""How many threads qmri's compute libraries use: Numba kernels, BLAS (NumPy), torch, file writing.

:func:`set_threads` is what ``--threads N`` calls; the default is every core the process may use.
Numba reads the count when it is first imported (``NUMBA_NUM_THREADS``), or is told directly if it is
already loaded; BLAS pools are limited through ``threadpoolctl``; torch, when loaded, through
``torch.set_num_threads``.

The count is at most the cores the process may use (:func:`available`): more threads than cores only
compete for them, and a count far above (``--threads 100000``) makes the thread pools fail (Numba
crashes, OpenMP cannot create the threads, memory runs out). :func:`check_threads` is the one check,
for ``--threads`` of every command, :func:`set_threads` from Python and the cohort engine.
"""

from __future__ import annotations

import math
import numbers
import os
import sys

from qmri.errors import QMRIInputError

_count: int | None = None


def available() -> int:
    """Cores this process may run on (``os.process_cpu_count()`` where Python has it, else the CPU
    affinity mask, ``os.sched_getaffinity(0)``)."""
    if hasattr(os, "process_cpu_count"):  # Python >= 3.13
        return os.process_cpu_count() or 1
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def check_threads(n) -> int:
    """``n`` as a thread count: an integer from 1 to :func:`available`.

    Raises
    ------
    qmri.errors.QMRIInputError
        ``n`` is not an integer, below 1, or above the cores this process may use (the message
        names the limit).
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Real) or not math.isfinite(n) or int(n) != n or n < 1:
        raise QMRIInputError(f"--threads must be a positive integer, got {n}")
    limit = available()
    if n > limit:
        raise QMRIInputError(f"--threads {int(n)}: more than the {limit} core(s) this process may use; "
                             f"give at most {limit}")
    return int(n)


def count() -> int:
    """The thread count in force: the one set by :func:`set_threads`, else :func:`available`."""
    return _count or available()


def chosen() -> int | None:
    """The thread count set by :func:`set_threads` (``--threads``), or None when none was set."""
    return _count


def set_threads(n: int) -> None:
    """Use ``n`` threads in every compute library from now on.

    Raises
    ------
    qmri.errors.QMRIInputError
        ``n`` is not an integer from 1 to the cores this process may use (:func:`check_threads`).
    """
    global _count
    _count = check_threads(n)
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(_count, numba.config.NUMBA_NUM_THREADS))
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(_count)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(_count)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=_count)
