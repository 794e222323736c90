"""How many threads qmri's compute libraries use: Numba kernels, BLAS (NumPy), torch, file writing.

:func:`set_threads` is what ``--threads N`` calls; the default is every core the process may use.
Numba reads the count when it is first imported (``NUMBA_NUM_THREADS``), or is told directly if it is
already loaded; BLAS pools are limited through ``threadpoolctl``; torch, when loaded, through
``torch.set_num_threads``.
"""

from __future__ import annotations

import os
import sys

_count: int | None = None


def available() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


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
        ``n`` is not a positive integer.
    """
    from qmri.errors import QMRIInputError

    global _count
    if int(n) != n or n < 1:
        raise QMRIInputError(f"--threads must be a positive integer, got {n}")
    _count = int(n)
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(_count, numba.config.NUMBA_NUM_THREADS))
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(_count)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(_count)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=_count)
