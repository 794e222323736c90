"""How a model is declared once, and the fitting front end every model shares.

A :class:`SignalModel` is the single declaration of a signal equation: ordered parameters with
units, default bounds and initial guess, the equation as a Numba kernel with its analytic
Jacobian, and the same equation in torch for the network estimators. Estimators read only this
declaration, so they know nothing about any particular model.

A :class:`Model` is what users hold: a signal model bound to an acquisition (b-values, frame
times and AIF, ...), with ``fit(data, mask=..., method=...)`` returning
:class:`qmri.maps.ParameterMaps`. Subclasses implement :meth:`Model._fit_voxels` for a flat
``(n_voxels, n_measurements)`` block; masking, chunking, progress and scattering back into
volumes happen here once for all models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numba as nb
import numpy as np
from numba import types

from qmri.errors import QMRIInputError
from qmri.fitting.result import FitResult

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
class SignalModel:
    """The single declaration of a signal equation.

    Attributes
    ----------
    name : str
        Registry key (e.g. ``"ivim"``).
    parameters : tuple of Parameter
        Ordered parameters; this order is the layout of every parameter vector.
    signal : numba dispatcher
        ``signal(p, acq, out)``: writes the model signal for parameters ``p`` (n_params,) and
        acquisition ``acq`` (n_measurements, k) into ``out`` (n_measurements,).
    jacobian : numba dispatcher
        ``jacobian(p, acq, J)``: writes ∂signal/∂p into ``J`` (n_measurements, n_params).
    torch_signal : callable
        ``torch_signal(params, acq)`` with ``params`` a tensor (N, n_params) and ``acq`` a tensor
        (n_measurements, k); returns (N, n_measurements). Same equation, differentiable.
    acquisition_doc : str
        What the columns of ``acq`` hold, with units.
    example_acquisition : callable
        Returns a typical ``acq`` array (used by the declaration tests).
    reference : str
        Source of the equation (paper or standard).
    signal_jacobian : numba dispatcher, optional
        ``signal_jacobian(p, acq, out, J)``: signal and Jacobian in one pass (sharing the
        exponentials, say). Optional: when absent, one is composed from ``signal`` and
        ``jacobian``. The least-squares engine evaluates both at every trial point through it,
        as a first-class function of type ``qmri.fitting.lm.SIGNAL_JACOBIAN_SIG`` (all arrays
        float64 and C-contiguous).
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
    extra: dict = field(default_factory=dict)

    @property
    def signal_and_jacobian(self) -> Callable:
        """``f(p, acq, out, J)``: the declared ``signal_jacobian`` or one composed of the two kernels."""
        if self.signal_jacobian is not None:
            return self.signal_jacobian
        key = (self.signal, self.jacobian)
        if key not in _COMPOSED:
            _COMPOSED[key] = _compose(self.signal, self.jacobian)
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

    def evaluate(self, params, acq) -> np.ndarray:
        """Signals for many parameter vectors.

        Parameters
        ----------
        params : array_like, shape (N, n_params) or (n_params,)
        acq : array_like, shape (n_measurements, k)

        Returns
        -------
        ndarray, shape (N, n_measurements) (or (n_measurements,) for a single vector)
        """
        P = np.asarray(params, dtype=np.float64)
        single = P.ndim == 1
        P = np.ascontiguousarray(np.atleast_2d(P))
        acq = np.ascontiguousarray(acq, dtype=np.float64)
        out = np.empty((P.shape[0], acq.shape[0]))
        _evaluate_batch(self.signal, acq, P, out)
        return out[0] if single else out

    def jacobian_at(self, params, acq) -> np.ndarray:
        """Analytic Jacobian (n_measurements, n_params) at one parameter vector."""
        p = np.ascontiguousarray(params, dtype=np.float64)
        acq = np.ascontiguousarray(acq, dtype=np.float64)
        J = np.empty((acq.shape[0], self.n_params))
        self.jacobian(p, acq, J)
        return J


_COMPOSED: dict = {}


def _compose(signal, jacobian):
    @nb.njit
    def signal_jacobian(p, acq, out, J):
        signal(p, acq, out)
        jacobian(p, acq, J)

    return signal_jacobian


_A1 = types.float64[::1]
_A2 = types.float64[:, ::1]
_SIGNAL = types.FunctionType(types.void(_A1, _A2, _A1))


@nb.njit(types.void(_SIGNAL, _A2, _A2, _A2), parallel=True, cache=True)
def _evaluate_batch(signal_fn, acq, P, out):
    for v in nb.prange(P.shape[0]):
        signal_fn(P[v], acq, out[v])


def normalise_to_lowest_b(Y, bvals):
    """Divide each voxel's signals by its mean signal at the lowest b-value.

    Parameters
    ----------
    Y : ndarray, shape (n, m)
    bvals : ndarray, shape (m,)

    Returns
    -------
    Yn : ndarray (n, m), C-contiguous (NaN rows where the reference is not finite and positive)
    scale : ndarray (n,)
        The divisor (1 where unusable).
    good : ndarray of bool (n,)
    """
    low = bvals == bvals.min()
    s0 = Y[:, low].mean(axis=1)
    good = np.isfinite(s0) & (s0 > 0)
    scale = np.where(good, s0, 1.0)
    Yn = Y / scale[:, None]
    Yn[~good] = np.nan
    return np.ascontiguousarray(Yn), scale, good


def register(model: SignalModel) -> SignalModel:
    """Add a signal model to :data:`SIGNAL_MODELS` (one declaration per name)."""
    SIGNAL_MODELS[model.name] = model
    return model


def resolve_bounds(model: SignalModel, bounds: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """Default bounds of ``model`` with some replaced by ``bounds`` ({name: (lower, upper)}).

    Raises
    ------
    QMRIInputError
        Unknown parameter name, or lower > upper.
    """
    lo, hi = model.lower.copy(), model.upper.copy()
    for name, pair in (bounds or {}).items():
        if name not in model.names:
            raise QMRIInputError(f"unknown parameter {name!r} in bounds; {model.name} has {', '.join(model.names)}")
        a, b = (float(v) for v in pair)
        if not a <= b:
            raise QMRIInputError(f"bounds for {name} must satisfy lower <= upper, got ({a}, {b})")
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


class Model:
    """A signal model bound to its acquisition; the one interface of every estimator.

    Subclasses set ``methods`` (names accepted by ``fit``), ``default_method`` and
    ``output_units`` and implement :meth:`_fit_voxels`.
    """

    methods: tuple[str, ...] = ()
    default_method: str = ""
    #: Minimum number of measurements any method needs.
    n_measurements: int = 0

    def output_units(self, method: str) -> dict[str, str]:  # pragma: no cover - abstract
        """Units of every output parameter of ``method``."""
        raise NotImplementedError

    def provenance(self, method: str) -> dict:
        """Model-specific facts written into sidecars (bounds, acquisition, references)."""
        return {}

    def check_method(self, method: str) -> None:
        """Raise :class:`QMRIInputError` if the acquisition cannot support ``method``."""

    def _fit_voxels(self, signals: np.ndarray, method: str, compute_se: bool) -> FitResult:  # pragma: no cover
        raise NotImplementedError

    def fit(self, data, mask=None, method: str | None = None, *, compute_se: bool = False,
            progress: bool = False, chunk_size: int = 100_000):
        """Fit every voxel of ``data`` (inside ``mask``).

        Parameters
        ----------
        data : array_like, shape (..., n_measurements)
            Signals; the last axis runs over the acquisition the model was built with. Any
            number of leading (spatial) axes, including none.
        mask : array_like of bool, shape data.shape[:-1], optional
            Voxels to fit; default every voxel. Voxels outside get NaN.
        method : str, optional
            One of ``self.methods``; default ``self.default_method``.
        compute_se : bool
            Also return standard errors ``<param>_se`` where the method supports them.
        progress : bool
            Show a tqdm progress bar over voxel chunks.
        chunk_size : int
            Voxels per chunk (bounds memory and drives the progress bar).

        Returns
        -------
        qmri.maps.ParameterMaps
            Maps of shape ``data.shape[:-1]``.

        Raises
        ------
        QMRIInputError
            Unknown method, last axis not matching the acquisition, mask of the wrong shape.
        """
        from qmri.maps import ParameterMaps

        method = method or self.default_method
        if method not in self.methods:
            raise QMRIInputError(f"unknown method {method!r}; choose one of {', '.join(self.methods)}")
        self.check_method(method)
        data = np.asarray(data)
        if data.ndim < 1 or data.shape[-1] != self.n_measurements:
            raise QMRIInputError(
                f"data has {data.shape[-1] if data.ndim else 0} measurements on its last axis, "
                f"the acquisition has {self.n_measurements}")
        spatial = data.shape[:-1]
        if mask is None:
            mask = np.ones(spatial, dtype=bool)
        else:
            mask = np.asarray(mask)
            if mask.shape != spatial:
                raise QMRIInputError(f"mask shape {mask.shape} does not match data shape {spatial}")
            mask = mask.astype(bool)
        idx = np.flatnonzero(mask)
        flat = data.reshape(-1, self.n_measurements)
        t0 = time.perf_counter()
        parts = []
        chunks = range(0, max(len(idx), 1), max(int(chunk_size), 1))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(idx), unit="vox", desc=f"{type(self).__name__} {method}", leave=False)
        for start in chunks:
            sel = idx[start:start + chunk_size]
            Y = np.ascontiguousarray(flat[sel], dtype=np.float64)
            parts.append(self._fit_voxels(Y, method, compute_se))
            if bar is not None:
                bar.update(len(sel))
        if bar is not None:
            bar.close()
        result = FitResult.concatenate(parts)
        seconds = time.perf_counter() - t0
        prov = {"model": type(self).__name__, "method": method, "n_voxels": int(len(idx)),
                "fit_seconds": round(seconds, 4)}
        prov.update(self.provenance(method))
        return ParameterMaps.from_flat(result, idx, spatial, self.output_units(method), prov)
