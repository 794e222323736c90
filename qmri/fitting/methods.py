"""Estimation methods as objects: what ``Model.fit(method=...)``, ``--method`` and ``--help`` read.

A :class:`Method` has a name, a one-line description, the options it accepts (declared once, as
:class:`qmri.options.Option`) and a ``fit(model, signals, covariates, **options)`` that returns a
:class:`qmri.fitting.FitResult` for a block of voxels. A model lists its methods in its ``methods``
table (:func:`table`); a method that serves many models (the least-squares fit below, the
network estimator) is added to each of them with :meth:`qmri.models.model.Model.add_method`. No
code anywhere dispatches on a method's name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from qmri.errors import QMRIInputError
from qmri.fitting.lm import fit_lm
from qmri.options import Option

#: Standard errors from the Jacobian at the solution (least-squares methods).
SE_OPTION = Option("compute_se", "also write standard errors <param>_se of the fitted parameters "
                   "(from the Jacobian at the solution)", bool, False, flag="--se")

#: 95 % intervals from the Jacobian standard errors, with the t quantile of the residual degrees of freedom.
INTERVAL_OPTION = Option("interval", "also write <param>_lo and <param>_hi, a 95 % interval: least squares "
                         "estimate +/- t(0.975, m-p) * SE (m measurements, p parameters: sigma is estimated from the "
                         "m-p residual degrees of freedom); dnn estimate +/- 1.96 * sqrt(SD^2 + CRLB^2) (ensemble "
                         "spread and the Cramer-Rao bound at the estimate, sigma from the residuals); limited to the "
                         "bounds", bool, False)
#: Parametric-bootstrap intervals of the least-squares methods.
BOOTSTRAP_OPTION = Option("bootstrap", "with --interval: <param>_lo/_hi are instead the 2.5 and 97.5 % percentiles "
                          "of N parametric-bootstrap refits (signals simulated from each voxel's fit with its "
                          "residual sigma, Rician for magnitude data; costs N fits per voxel; 200 is typical)",
                          int, None, metavar="N")
#: Voxels times refits simulated at once by the bootstrap (bounds its memory).
BOOTSTRAP_BLOCK = 200_000
#: Probability held by the intervals of :data:`INTERVAL_OPTION`.
INTERVAL_LEVEL = 0.95


def interval_half_width(se, m: int, p: int):
    """``t(0.975, m - p) · se``: half the 95 % interval of a least-squares estimate whose noise level is
    estimated from the residuals (Student's t with ``m - p`` degrees of freedom; Seber & Wild,
    *Nonlinear Regression*, 1989, §5.1). NaN when ``m <= p``."""
    from scipy.stats import t

    if m <= p:
        return np.full(np.shape(se), np.nan)
    return t.ppf(0.5 + INTERVAL_LEVEL / 2, m - p) * np.asarray(se)


def set_interval(model, res, name: str, lo, hi) -> None:
    """Store ``<name>_lo`` and ``<name>_hi`` in ``res.params``, limited to the parameter's bounds
    (:attr:`~qmri.models.model.Model.lower`/``upper``; not the amplitude, whose bounds are relative to
    each voxel's signal). The truth lies within the bounds, so limiting never changes whether an
    interval holds it."""
    j = model.spec.names.index(name)
    if name != model.amplitude:
        with np.errstate(invalid="ignore"):
            lo, hi = np.maximum(lo, model.lower[j]), np.minimum(hi, model.upper[j])
    res.params[f"{name}_lo"], res.params[f"{name}_hi"] = lo, hi


def noise_level(value):
    """``--sigma``: a positive number, the path of a noise map (a NIfTI on the series' grid), or (from
    Python, or once the map is read) an array of per-voxel noise levels.

    Raises
    ------
    QMRIInputError
        A number that is not positive and finite; an array without a positive finite value.
    """
    if np.ndim(value) > 0:
        try:
            a = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise QMRIInputError("the noise map must hold numbers") from None
        with np.errstate(invalid="ignore"):
            if not np.any(np.isfinite(a) & (a > 0)):
                raise QMRIInputError("the noise map has no positive finite value")
        return a
    try:
        v = float(value)
    except (TypeError, ValueError):
        return Path(value)
    if not (np.isfinite(v) and v > 0):
        raise QMRIInputError(f"the noise level must be a positive number or a noise map, got {value!r}")
    return v


#: Cramér–Rao lower bound maps (:mod:`qmri.fitting.crlb`), offered by every method whose result
#: holds the declared parameters; computed by :meth:`qmri.models.model.Model.fit` after the method.
CRLB_OPTIONS = (
    Option("crlb", "also write <param>_crlb: the Cramer-Rao lower bound of the standard deviation of each "
           "parameter at the fitted values for this acquisition and noise level (units of the parameter)",
           bool, False),
    Option("noise", "noise model of --crlb: gaussian (JtJ/sigma^2) or rician (Rician Fisher information, "
           "Karlsen et al. MRM 1999)", str, "gaussian", choices=("gaussian", "rician")),
    Option("sigma", "noise level of --crlb in the units of the fitted data (Gaussian SD, or the Rician scale): "
           "a number or a noise map NIfTI on the series' grid (default: each voxel's residual rmse "
           "* sqrt(m/(m-p)))", noise_level, None, metavar="SIGMA|FILE"),
)
#: Names of :data:`CRLB_OPTIONS`.
CRLB_NAMES = tuple(o.name for o in CRLB_OPTIONS)


@dataclasses.dataclass(frozen=True)
class Validation:
    """How ``qmri validate`` (:mod:`qmri.validation`) checks a method: :attr:`Method.validation`.

    The default suits an exact, fast method; a method that is biased even without noise states its
    tolerance, and one that is slow or learns from the voxels it fits states lighter options.

    Attributes
    ----------
    recovery : float or None
        Largest NRMSE (:func:`qmri.simulate.nrmse_bias`) of each parameter allowed when the method
        fits a noise-free phantom, every voxel fitted (default 1e-6: exact); None: not checked (the
        accuracy at the phantom's SNR is still reported).
    options : dict
        Method options used when validating and in ``qmri demo`` (e.g. fewer training epochs, or
        trained networks), default none.
    reference_cases : bool
        Whether the method is run on the reference suites' cases (OSIPI), which are fitted a few
        voxels at a time; False for a method that cannot estimate so few voxels (e.g. one that
        trains on the voxels it fits).
    note : str
        Shown in the report beside the method: why the tolerance or options differ from the defaults.
    """

    recovery: float | None = 1e-6
    options: dict = dataclasses.field(default_factory=dict)
    reference_cases: bool = True
    note: str = ""


class Method:
    """One way of estimating a model's parameters.

    Parameters
    ----------
    name : str
        Value of ``method=`` / ``--method``.
    description : str
        One line for ``--help`` and the documentation.
    fit : callable, optional
        ``fit(model, Y, C, **options) -> FitResult`` for signals ``Y`` (n, m) and covariates
        ``C`` (n, k) or None; subclasses may override :meth:`fit` instead.
    options : tuple of Option
        Keywords the method accepts (anything else is an error).
    reference : str
        Source of the method (paper or standard).
    validation : Validation, optional
        How ``qmri validate`` checks the method (default :class:`Validation`'s defaults).
    bounded : bool
        Whether the estimates keep within the model's bounds (``model.lower``, ``model.upper``), so
        that bounds given by the user (``bounds=``, ``--bounds``) change them and the fraction of
        voxels at a bound means something (default True). A method that ignores them (a closed-form
        linear estimate) says False: bounds given with it are refused
        (:meth:`qmri.models.model.Model.check_bounds_apply`), as any option a method does not use.

    Every method whose result holds the declared parameters (:attr:`gives_parameters`) also
    accepts :data:`CRLB_OPTIONS` (``--crlb``, ``--noise``, ``--sigma``): the bounds are computed by
    :meth:`qmri.models.model.Model.fit` from the fitted values, never by the method itself.
    """

    #: Whether the method's results hold the declared parameters (``model.spec.names``), so that
    #: their Cramér–Rao bounds can be computed (False for methods giving only derived maps).
    gives_parameters: bool = True

    def __init__(self, name: str, description: str, fit: Callable | None = None, options: tuple = (),
                 reference: str = "", validation: Validation | None = None, bounded: bool = True):
        self.name = name
        self.description = description
        self._fit = fit
        self.options = tuple(options) + (CRLB_OPTIONS if self.gives_parameters else ())
        self.reference = reference
        self.validation = validation or Validation()
        self.bounded = bool(bounded)

    def fit(self, model, Y: np.ndarray, C, **options):
        """Estimates for a block of voxels (see the class docstring)."""
        return self._fit(model, Y, C, **options)

    def warm_up(self, model) -> None:
        """Load this method's compiled kernels for ``model`` (a fit of one made-up voxel), so that
        a caller can do it in a background thread while it reads data. Best effort: any error is
        left to the real fit to report."""
        try:
            with np.errstate(all="ignore"):
                self.fit(model, np.ones((1, model.n_measurements)), None)
        except Exception:  # noqa: BLE001 - a warm-up never decides anything
            pass

    def prepare(self, model, rows, index, covariates, *, progress: bool = False, **options):
        """Work done once per :meth:`~qmri.models.model.Model.fit`, before the voxel chunks, with
        every voxel to fit in view (a network estimator trains here on the voxels it will fit).

        Parameters
        ----------
        model : qmri.models.model.Model
        rows : callable
            ``rows(sel)`` gives the signals of the voxels ``sel`` (a subset of ``index``) as the
            fit sees them: float64 array (len(sel), n_measurements), converted by the fit's
            ``transform`` if any (e.g. DCE signal to concentration), not normalised.
        index : ndarray of int, shape (n,)
            Voxels (rows of ``covariates``) that are fitted.
        covariates : ndarray, shape (n_total, n_covariates), or None
        progress : bool
            Show progress.
        **options
            The method's resolved options.

        Returns
        -------
        state : dict
            Further keywords passed to every :meth:`fit` call of this fit (default none).
        provenance : dict
            Merged into the maps' provenance (default none).
        """
        return {}, {}

    def output_units(self, model, options: dict) -> dict[str, str]:
        """Unit of every parameter map this method produces for ``model`` (default the model's outputs)."""
        return model.output_units()

    def vector_units(self, model, options: dict) -> dict[str, str]:
        """Unit of every output of several values per voxel (written as a 4-D image, kind ``vector``)
        this method produces for ``model`` with ``options`` (default none; DKI's ``DT``, ``KT``)."""
        return {}

    def output_kinds(self, model, options: dict) -> dict[str, str]:
        """Every map (quality maps aside) this method produces for ``model`` with ``options``, in order,
        with its kind: ``parameter`` (:meth:`output_units`), ``standard_error`` (``<param>_se``, with
        ``compute_se``), ``crlb`` (``<param>_crlb``, with ``crlb``) and ``vector`` (:meth:`vector_units`).

        Raises
        ------
        QMRIInputError
            CRLB maps asked of a model that cannot give them (:meth:`~qmri.models.model.Model.check_crlb`).
        """
        kinds = dict.fromkeys(self.output_units(model, options), "parameter")
        if options.get("compute_se"):
            kinds.update(dict.fromkeys((f"{k}_se" for k in model.spec.names), "standard_error"))
        if options.get("crlb"):
            model.check_crlb()
            kinds.update(dict.fromkeys((f"{k}_crlb" for k in model.spec.names), "crlb"))
        kinds.update(dict.fromkeys(self.vector_units(model, options), "vector"))
        return kinds

    def output_names(self, model, options: dict) -> list[str]:
        """Names of the maps of :meth:`output_kinds`."""
        return list(self.output_kinds(model, options))

    def __repr__(self):
        return f"Method({self.name!r})"


class LeastSquares(Method):
    """Bounded Levenberg–Marquardt fit of any declared model (:func:`qmri.fitting.fit_lm`).

    The model supplies, through its hooks, the signals' normalisation
    (:meth:`~qmri.models.model.Model.normalise`) and the completion of the result
    (:meth:`~qmri.models.model.Model.complete`: amplitude scaled back, invalid voxels failed, derived
    outputs); the fit uses the model's declaration (``model.spec``), acquisition (``model.acq``), bounds
    and stopping rules (``model.lm_options``). The steps that are this method's own are given to it:

    Parameters
    ----------
    start : callable, optional
        ``start(model, Yn, C) -> P0`` (n, n_params): starting values for the normalised signals
        ``Yn`` and covariates ``C``; default the model's initial guess for every voxel.
    refine : callable, optional
        ``refine(model, res, Yn, C)``: a last step on the least-squares result, in place (e.g. a
        second start where the first fit is implausible); default none.
    """

    def __init__(self, name: str = "lsq", description: str = "bounded Levenberg-Marquardt fit with "
                 "analytic Jacobians", reference: str = "", validation: Validation | None = None, *,
                 start=None, refine=None):
        super().__init__(name, description, options=(SE_OPTION, INTERVAL_OPTION, BOOTSTRAP_OPTION),
                         reference=reference, validation=validation)
        self.start = start
        self.refine = refine

    def starting_values(self, model, Yn, C) -> np.ndarray:
        """The start of the fit: :attr:`start`, or the model's initial guess for every voxel."""
        if self.start is not None:
            return self.start(model, Yn, C)
        return np.broadcast_to(model.initial, (Yn.shape[0], model.initial.size))

    @staticmethod
    def _check_bootstrap(interval, bootstrap) -> None:
        if bootstrap is not None and not interval:
            raise QMRIInputError("--bootstrap gives the intervals of --interval; add --interval")
        if bootstrap is not None and bootstrap < 20:
            raise QMRIInputError(f"--bootstrap: at least 20 refits are needed for 95 % percentiles, got {bootstrap}")

    def fit(self, model, Y, C, compute_se=False, interval=False, bootstrap=None):
        self._check_bootstrap(interval, bootstrap)
        res = self._least_squares(model, Y, C, compute_se, interval and bootstrap is None)
        if bootstrap is not None:
            self._bootstrap(model, res, C, int(bootstrap))
        return res

    def _bootstrap(self, model, res, C, n_refits: int) -> None:
        """Percentile intervals of parametric-bootstrap refits (Efron & Tibshirani, *An Introduction to
        the Bootstrap*, 1993, §6.5 and §13.3): for each voxel, ``n_refits`` signals are simulated from its
        fitted parameters with noise of its residual σ (rmse·sqrt(m/(m − p)); Rician or Gaussian as the
        model's :attr:`~qmri.models.network.Network.noise`; seed 0 for every block of voxels) and
        fitted like the data; ``<param>_lo``/``_hi`` are the 2.5 and 97.5 % percentiles of the refits."""
        from qmri.simulate import add_gaussian_noise, add_rician_noise

        names = model.spec.names
        m, p = model.n_measurements, model.spec.n_params
        P = np.stack([res.params[k] for k in names], axis=1)
        sigma = res.rmse * np.sqrt(m / (m - p)) if m > p else np.full(res.n, np.nan)
        ok = np.all(np.isfinite(P), axis=1) & np.isfinite(sigma) & (sigma > 0)
        lo, hi = np.full(P.shape, np.nan), np.full(P.shape, np.nan)
        add = add_rician_noise if model.network.noise == "rician" else add_gaussian_noise
        rng = np.random.default_rng(0)
        index = np.flatnonzero(ok)
        step = max(1, BOOTSTRAP_BLOCK // n_refits)
        for start in range(0, index.size, step):
            sel = index[start:start + step]
            Cb = None if C is None else np.repeat(C[sel], n_refits, axis=0)
            clean = model.spec.evaluate(np.repeat(P[sel], n_refits, axis=0), model.acq, Cb)
            Yb = add(clean, np.repeat(sigma[sel], n_refits)[:, None], rng)
            refit = self._least_squares(model, Yb, Cb, False, False)
            Pb = np.stack([refit.params[k] for k in names], axis=1).reshape(sel.size, n_refits, p)
            with np.errstate(all="ignore"):
                lo[sel], hi[sel] = np.nanquantile(Pb, [0.5 - INTERVAL_LEVEL / 2, 0.5 + INTERVAL_LEVEL / 2], axis=1)
        for j, k in enumerate(names):
            set_interval(model, res, k, lo[:, j], hi[:, j])

    def _least_squares(self, model, Y, C, compute_se, interval):
        Yn, scale, good = model.normalise(Y, C)
        p0 = self.starting_values(model, Yn, C)
        opts = dataclasses.replace(model.lm_options, compute_se=bool(compute_se or interval))
        res = fit_lm(model.spec, model.acq, Yn, p0, covariates=C, lower=model.lower, upper=model.upper,
                     options=opts)
        if self.refine is not None:
            self.refine(model, res, Yn, C)
        model.complete(res, scale, good)
        if interval:
            for k in model.spec.names:
                half = interval_half_width(res.se[k], model.n_measurements, model.spec.n_params)
                set_interval(model, res, k, res.params[k] - half, res.params[k] + half)
            if not compute_se:
                res.se = {}
        return res

    def output_units(self, model, options: dict) -> dict[str, str]:
        self._check_bootstrap(options.get("interval"), options.get("bootstrap"))
        units = model.output_units()
        if options.get("interval"):
            units.update({f"{k}_{end}": model.spec.units[k] for k in model.spec.names for end in ("lo", "hi")})
        return units


def table(*methods: Method) -> dict[str, Method]:
    """A model's ``methods`` table: ``{name: method}`` in the given order (the first is listed first)."""
    return {m.name: m for m in methods}
