"""How a signal equation is declared, once: :class:`Parameter`, :class:`Covariate`, :class:`SignalModel`.

A :class:`SignalModel` is the single declaration of a signal equation: ordered parameters with
units, default bounds and initial guess, the per-voxel covariates it reads (e.g. a relative B1),
the equation as a Numba kernel with its analytic Jacobian, and the same equation in torch for the
network estimators. Estimators read only this declaration, so they know nothing about any
particular model. Every declaration is added to :data:`SIGNAL_MODELS` by :func:`register`; the
declaration tests run over that registry.

Kernel conventions (all arrays float64, C-contiguous):

* ``signal(p, acq, cov, out)`` writes the signal for parameters ``p`` (n_params,) into ``out`` (m,);
* ``jacobian(p, acq, cov, J)`` writes ∂signal/∂p into ``J`` (m, n_params);
* ``signal_jacobian(p, acq, cov, out, J)`` (optional) does both in one pass;

``acq`` is the 2-D acquisition array shared by every voxel (b-values, frame times and AIF, ...) in
the layout that ``acquisition_doc`` states, usually (m, k) with one row per measurement; ``cov`` (n_covariates,) holds one voxel's covariates in the
declared order (length 0 for models without any). A model whose acquisition is laid out otherwise
(the DCE models: one column per time point of the arterial input's own, finer grid and the frames,
a row marking the frames, so that m is the number of frames) declares ``measurements(acq) -> m``;
``out`` and ``J`` always have one row per *measurement*, so every estimator reads m from
:meth:`SignalModel.n_measurements`, never from ``acq.shape[0]``. The torch twin is
``torch_signal(params, acq, cov)`` with ``params`` (N, n_params), ``acq`` as above and ``cov``
(N, n_covariates) or None, returning (N, m).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from qmri.errors import QMRIInputError
from qmri.jit import dispatcher, njit, prange

#: Every declared signal model, by name (filled by :func:`register`).
SIGNAL_MODELS: dict[str, "SignalModel"] = {}


@dataclass(frozen=True)
class Parameter:
    """One model parameter.

    Attributes
    ----------
    name : str
        Label used for keys and file names (field-standard: ``f``, ``D``, ``Dstar``, ``Ktrans``...).
    unit : str
        Unit string written into sidecars (``"mm2/s"``, ``"1/min"``, ``""`` for fractions...).
    lower, upper : float
        Default bounds (``±inf`` for none).
    initial : float
        Default initial guess.
    description : str
        One line for humans (sidecars, ``--help``).
    """

    name: str
    unit: str
    lower: float
    upper: float
    initial: float
    description: str = ""


@dataclass(frozen=True)
class Covariate:
    """A per-voxel input of a signal equation that is known, not fitted (e.g. a relative B1).

    Attributes
    ----------
    name : str
    unit : str
    default : float
        Value used where none is given.
    description : str
    """

    name: str
    unit: str
    default: float
    description: str = ""


@dataclass(frozen=True)
class SignalModel:
    """The single declaration of a signal equation (kernel conventions in the module docstring).

    Attributes
    ----------
    name : str
        Registry key (e.g. ``"ivim"``).
    parameters : tuple of Parameter
        Ordered parameters; this order is the layout of every parameter vector.
    signal, jacobian : qmri.jit.Kernel
        ``signal(p, acq, cov, out)`` and ``jacobian(p, acq, cov, J)``.
    torch_signal : callable
        ``torch_signal(params, acq, cov)``: the same equation in torch, differentiable.
    acquisition_doc : str
        What the columns of ``acq`` hold, with units.
    example_acquisition : callable
        Returns a typical ``acq`` array (used by the declaration tests).
    reference : str
        Source of the equation (paper or standard).
    signal_jacobian : qmri.jit.Kernel, optional
        ``signal_jacobian(p, acq, cov, out, J)``: signal and Jacobian in one pass (sharing the
        exponentials, say). When absent, one is composed from ``signal`` and ``jacobian``. The
        least-squares engine evaluates both at every trial point through it, as a first-class
        function of type :func:`qmri.fitting.lm.signal_jacobian_type`.
    covariates : tuple of Covariate
        Per-voxel inputs, in the order the kernels read them from ``cov``.
    measurements : callable, optional
        ``measurements(acq) -> m``: the number of measurements an acquisition array describes,
        for models whose ``acq`` is not one row per measurement (default: ``acq.shape[0]``).
    """

    name: str
    parameters: tuple[Parameter, ...]
    signal: Callable
    jacobian: Callable
    torch_signal: Callable
    acquisition_doc: str
    example_acquisition: Callable[[], np.ndarray]
    reference: str
    signal_jacobian: Callable | None = None
    covariates: tuple[Covariate, ...] = field(default=())
    measurements: Callable[[np.ndarray], int] | None = None

    def n_measurements(self, acq) -> int:
        """Number of measurements (rows of ``out`` and ``J``) the acquisition array ``acq`` describes."""
        return int(np.shape(acq)[0]) if self.measurements is None else int(self.measurements(acq))

    @property
    def signal_and_jacobian(self):
        """Numba dispatcher ``f(p, acq, cov, out, J)``: the declared ``signal_jacobian`` or one
        composed of the two kernels."""
        if self.signal_jacobian is not None:
            return dispatcher(self.signal_jacobian)
        key = (self.signal, self.jacobian)
        if key not in _COMPOSED:
            _COMPOSED[key] = _compose(dispatcher(self.signal), dispatcher(self.jacobian))
        return _COMPOSED[key]

    @property
    def n_params(self) -> int:
        return len(self.parameters)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    @property
    def units(self) -> dict[str, str]:
        return {p.name: p.unit for p in self.parameters}

    @property
    def lower(self) -> np.ndarray:
        return np.array([p.lower for p in self.parameters], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        return np.array([p.upper for p in self.parameters], dtype=np.float64)

    @property
    def initial(self) -> np.ndarray:
        return np.array([p.initial for p in self.parameters], dtype=np.float64)

    @property
    def covariate_names(self) -> list[str]:
        return [c.name for c in self.covariates]

    def covariate_array(self, covariates, n: int) -> np.ndarray:
        """Per-voxel covariates as the kernels read them: a C-contiguous (n, n_covariates) array.

        Parameters
        ----------
        covariates : array_like, shape (n, n_covariates) or (n_covariates,), or None
            None gives the declared defaults for every voxel.
        n : int
            Number of voxels.

        Raises
        ------
        ValueError
            Wrong shape.
        """
        k = len(self.covariates)
        if covariates is None:
            C = np.empty((n, k))
            C[:] = [c.default for c in self.covariates]
            return C
        C = np.asarray(covariates, dtype=np.float64)
        if C.ndim == 1:
            C = np.tile(C, (n, 1))
        if C.shape != (n, k):
            raise ValueError(f"covariates of {self.name} must have shape ({n}, {k}), got {C.shape}")
        return np.require(C, np.float64, ["C_CONTIGUOUS", "WRITEABLE"])

    def evaluate(self, params, acq, covariates=None) -> np.ndarray:
        """Signals for many parameter vectors.

        Parameters
        ----------
        params : array_like, shape (N, n_params) or (n_params,)
        acq : array_like, 2-D
            Acquisition array (one row per measurement unless the model declares ``measurements``).
        covariates : array_like, shape (N, n_covariates) or (n_covariates,), optional

        Returns
        -------
        ndarray, shape (N, n_measurements) (or (n_measurements,) for a single vector)
        """
        P = np.asarray(params, dtype=np.float64)
        single = P.ndim == 1
        P = np.ascontiguousarray(np.atleast_2d(P))
        acq = np.ascontiguousarray(acq, dtype=np.float64)
        C = self.covariate_array(covariates, P.shape[0])
        out = np.empty((P.shape[0], self.n_measurements(acq)))
        _evaluate_batch(dispatcher(self.signal), acq, C, P, out)
        return out[0] if single else out

    def jacobian_at(self, params, acq, covariates=None) -> np.ndarray:
        """Analytic Jacobian (n_measurements, n_params) at one parameter vector."""
        p = np.ascontiguousarray(params, dtype=np.float64)
        acq = np.ascontiguousarray(acq, dtype=np.float64)
        J = np.empty((self.n_measurements(acq), self.n_params))
        self.jacobian(p, acq, self.covariate_array(covariates, 1)[0], J)
        return J


_COMPOSED: dict = {}


def _compose(signal, jacobian):
    import numba

    @numba.njit
    def signal_jacobian(p, acq, cov, out, J):
        signal(p, acq, cov, out)
        jacobian(p, acq, cov, J)

    return signal_jacobian


def _evaluate_batch_type(types):
    a1, a2 = types.float64[::1], types.float64[:, ::1]
    signal = types.FunctionType(types.void(a1, a2, a1, a1))
    return types.void(signal, a2, a2, a2, a2)


@njit(signature=_evaluate_batch_type, parallel=True, cache=True)
def _evaluate_batch(signal_fn, acq, C, P, out):
    for v in prange(P.shape[0]):
        signal_fn(P[v], acq, C[v], out[v])


def register(model: SignalModel) -> SignalModel:
    """Add a signal model to :data:`SIGNAL_MODELS` (one declaration per name)."""
    SIGNAL_MODELS[model.name] = model
    return model


def bound_pair(name: str, pair) -> tuple[float, float]:
    """One parameter's bounds, checked: the one check of ``bounds=`` (Python), ``--bounds`` (command
    line, :func:`qmri.models.model.parse_bounds`) and ``bounds`` of a cohort configuration.

    Parameters
    ----------
    name : str
        The parameter (named in the error).
    pair : sequence of two numbers
        ``(lower, upper)`` in the units of the outputs. Both finite, ``lower < upper``; or
        ``lower == upper``, which fixes the parameter at that value (the least-squares and network
        estimators then keep it there).

    Returns
    -------
    (float, float)

    Raises
    ------
    QMRIInputError
        Not two numbers (text and booleans are not numbers), a bound that is not finite (``1e400``
        overflows to ``inf``), or ``lower > upper``.
    """
    values = list(pair) if isinstance(pair, (list, tuple, np.ndarray)) else []
    numeric = len(values) == 2 and all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
                                       for v in values)
    a, b = (float(values[0]), float(values[1])) if numeric else (np.nan, np.nan)
    if not (numeric and np.isfinite(a) and np.isfinite(b) and a <= b):
        got = f"[{a:g}, {b:g}]" if numeric else repr(pair)
        why = " (inf: a number too large for float64)" if numeric and np.isinf([a, b]).any() else ""
        raise QMRIInputError(f"{name} must be [lower, upper]: two finite numbers with lower <= upper (lower = upper "
                             f"fixes {name}), got {got}{why}")
    return a, b


def resolve_bounds(model: SignalModel, bounds: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """Default bounds of ``model`` with some replaced by ``bounds`` ({name: (lower, upper)}, each
    checked by :func:`bound_pair`).

    Raises
    ------
    QMRIInputError
        Unknown parameter name, or bounds that :func:`bound_pair` refuses.
    """
    lo, hi = model.lower.copy(), model.upper.copy()
    for name, pair in (bounds or {}).items():
        if name not in model.names:
            raise QMRIInputError(f"unknown parameter {name!r} in bounds; {model.name} has {', '.join(model.names)}")
        try:
            a, b = bound_pair(name, pair)
        except QMRIInputError as exc:
            raise QMRIInputError(f"bounds: {exc}") from None
        j = model.names.index(name)
        lo[j], hi[j] = a, b
    return lo, hi


def resolve_initial(model: SignalModel, initial: dict | None) -> np.ndarray:
    """Default initial guess of ``model`` with some values replaced by ``initial`` ({name: value})."""
    x0 = model.initial.copy()
    for name, value in (initial or {}).items():
        if name not in model.names:
            raise QMRIInputError(f"unknown parameter {name!r} in initial guess; {model.name} has {', '.join(model.names)}")
        x0[model.names.index(name)] = float(value)
    return x0
