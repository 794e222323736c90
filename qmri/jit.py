"""Numba kernels that are compiled (or loaded from the on-disk cache) on first use.

Every Numba kernel of qmri is declared with :func:`njit` from this module instead of
``numba.njit``. The decorator only records the function; Numba is imported, and the kernel
wrapped by ``numba.njit``, the first time a kernel of its module is called or its
:attr:`Kernel.dispatcher` is asked for. Importing qmri, reading the model declarations and
building the command line (``qmri --help``) therefore never imports Numba, which alone takes about
0.4 s.

When a module's first kernel is needed, every kernel named in that module's namespace is
materialised and the module's global names are rebound to the Numba dispatchers (kernels imported
from other modules are materialised in their own module first). Kernels call each other through
those globals, exactly as with plain ``numba.njit``; ``prange`` imported from here becomes
``numba.prange`` at the same moment. Caching (``cache=True``) works as usual: the functions are
module-level functions of the source files.
"""

from __future__ import annotations

import functools
import sys

#: Floating-point relaxations that keep NaN/inf semantics (the failure checks of the kernels rely
#: on ``np.isfinite``): reassociation, contraction into FMA and reciprocal approximation.
FASTMATH = frozenset({"reassoc", "contract", "arcp"})


class _Prange:
    """Stand-in for ``numba.prange`` until the module's kernels are materialised."""

    def __call__(self, *args):
        return range(*args)

    def __repr__(self):
        return "qmri.jit.prange"


#: Use as ``for i in prange(n)`` inside kernels; becomes ``numba.prange`` on materialisation.
prange = _Prange()


class Kernel:
    """A function to be compiled by Numba on first use (see the module docstring).

    Attributes
    ----------
    py_func : callable
        The Python function.
    options : dict
        Keyword arguments for ``numba.njit`` (``cache``, ``parallel``, ``fastmath``, ...).
    signature : callable or None
        ``signature(numba.types)`` returns an explicit signature: the kernel is compiled for that
        signature only, when materialised, as ``numba.njit(signature)`` would (arguments are
        converted to it; a Numba function passed where the signature has a first-class function
        type is converted, not specialised on).
    """

    def __init__(self, py_func, options: dict, signature=None):
        self.py_func = py_func
        self.options = options
        self.signature = signature
        self._dispatcher = None
        functools.update_wrapper(self, py_func)

    @property
    def dispatcher(self):
        """The Numba dispatcher (materialising this kernel's module on first access)."""
        if self._dispatcher is None:
            _materialise(sys.modules[self.py_func.__module__])
        return self._dispatcher

    def __call__(self, *args):
        return self.dispatcher(*args)

    def __repr__(self):
        state = "compiled" if self._dispatcher is not None else "not yet compiled"
        return f"<qmri kernel {self.py_func.__module__}.{self.py_func.__qualname__} ({state})>"


def njit(fn=None, *, signature=None, **options):
    """Declare a Numba kernel compiled on first use: ``@njit`` or ``@njit(**options)``.

    Parameters
    ----------
    fn : callable, optional
        The function (bare ``@njit``).
    signature : callable, optional
        ``signature(numba.types)`` returning an explicit Numba signature.
    **options
        ``cache``, ``parallel``, ``fastmath`` (a set, e.g. :data:`FASTMATH`), ``inline``...
    """
    if fn is not None:
        return Kernel(fn, dict(options), signature)

    def wrap(fn):
        return Kernel(fn, dict(options), signature)

    return wrap


def dispatcher(fn):
    """The Numba dispatcher of ``fn`` (a :class:`Kernel` or already a dispatcher)."""
    return fn.dispatcher if isinstance(fn, Kernel) else fn


def _materialise(module):
    import numba

    names = vars(module)
    for name, obj in list(names.items()):
        if obj is prange:
            names[name] = numba.prange
    own = [obj for obj in list(names.values())
           if isinstance(obj, Kernel) and obj._dispatcher is None and obj.py_func.__module__ == module.__name__]
    for obj in own:
        opts = dict(obj.options)
        if isinstance(opts.get("fastmath"), frozenset):
            opts["fastmath"] = set(opts["fastmath"])
        obj._dispatcher = numba.njit(**opts)(obj.py_func)
    for name, obj in list(names.items()):
        if isinstance(obj, Kernel):
            names[name] = obj.dispatcher
    # kernels with an explicit signature are compiled (or loaded from the cache) now, once every
    # name they refer to is a dispatcher
    for obj in own:
        if obj.signature is not None:
            obj._dispatcher.compile(obj.signature(numba.types))
            obj._dispatcher.disable_compile()  # as numba.njit(signature): no other specialisation
