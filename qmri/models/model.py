"""The fitting front end every model shares: :class:`Model`.

A :class:`Model` is what users hold: a signal model (:class:`qmri.models.base.SignalModel`) bound
to an acquisition (b-values, frame times and AIF, flip angles...), with
``fit(data, mask=..., method=..., **options)`` returning :class:`qmri.maps.ParameterMaps`.
Masking, per-voxel covariates, chunking, progress and scattering back into volumes happen here
once for all models; the estimation itself is done by the :class:`qmri.models.methods.Method`
objects of the model's ``methods`` table, on flat ``(n_voxels, n_measurements)`` blocks.

A subclass is also the declaration the command line, the phantoms and the demo read (class
attributes ``command``, ``summary``, ``workflow``, ``options``, ``methods``, ``phantom``): importing
a subclass that names a ``command`` registers it in :data:`COMMANDS`.

Every model records the keyword settings it was built with (:meth:`Model.settings`, as
scikit-learn's ``get_params``): its sidecars carry them, and :meth:`Model.from_provenance` rebuilds
the model a fit used as ``cls(**settings)``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import time

import numpy as np

from qmri.errors import QMRIInputError
from qmri.fitting.lm import LMOptions
from qmri.fitting.result import STATUS_CONVERGED, STATUS_FAILED, FitResult
from qmri.models.facets import CommandText, Demo
from qmri.models.network import Network
from qmri.options import Option, resolve

#: Model classes that have a command (``qmri <command>``), by command name, in import order.
COMMANDS: dict[str, type["Model"]] = {}
#: Every model class by its stable id (:attr:`Model.model_id`) and by each of its
#: :attr:`Model.former_names`, in import order.
MODEL_IDS: dict[str, type["Model"]] = {}

#: Sources of the Cramér–Rao bounds (recorded with ``--crlb`` maps).
CRLB_REFERENCE = ("Kay, Fundamentals of Statistical Signal Processing: Estimation Theory, 1993, ch. 3 (Gaussian); "
                  "Karlsen et al., MRM 1999;41:614 and Sijbers & den Dekker, MRM 2004;51:586 (Rician Fisher "
                  "information)")

#: ``--bounds`` of every command: parsed by :func:`parse_bounds`.
BOUNDS_OPTION_HELP = "override bounds, NAME=LOWER:UPPER separated by commas (units as the outputs)"


class Model:
    """A signal model bound to its acquisition; the one interface of every estimator.

    Class attributes (the declaration)
    ----------------------------------
    model_id : str
        The model's stable id (default: the class name in lower case, ``ivim``, ``vfa``): the
        BIDS ``model-`` label of its files (:meth:`label`) and the ``model_id`` its sidecars
        record, from which ``qmri plot-fit`` finds the class again, whatever the class is called.
    former_names : tuple of str
        Earlier class names or ids of the model, so that sidecars recording them still load.
    command : str or None
        Subcommand name (``qmri ivim``); None for a model reached through another's command.
    cli : CommandText
        The command's text: its ``qmri --help`` line and description (a :mod:`facet <qmri.models.facets>`).
    workflow : str
        How files become this model's data (a name in :data:`qmri.workflows.NAMES`).
    options : tuple of Option
        Constructor keywords the command line offers (``--threshold``, ``--preset``...), also read
        by cohort configurations and the file workflows.
    methods : dict of str to Method
        The estimation methods, the first being listed first; extend with :meth:`add_method`.
    default_method : str
    method_aliases : dict of str to str
        Earlier names of methods (``{"nonlinear": "lsq"}``), accepted wherever a method is named
        (``method=``, ``--method``, a cohort configuration, a sidecar's ``Method``); fits record the
        method's name.
    amplitude : str or None
        Parameter scaled back by the signal normalisation of :meth:`normalise` (``S0``, ``M0``).
    data_unit : str
        Unit of the fitted data, hence of the ``rmse`` map (``a.u.`` for signals, ``mM`` for
        concentrations).
    demo : Demo
        What ``qmri phantom`` offers and ``qmri demo`` fits and scores on the model's phantom
        (:meth:`phantom`; a :mod:`facet <qmri.models.facets>`).

    Instance attributes (set by the subclass constructor)
    -----------------------------------------------------
    spec : SignalModel
        The declaration fitted by generic methods.
    acq : ndarray (n_measurements, k)
        The acquisition array of ``spec``.
    n_measurements : int
        Length of the data's last axis.
    lower, upper, initial : ndarray (n_params,)
        Bounds and default start in ``spec`` order.
    lm_options : qmri.fitting.LMOptions
        Stopping rules of least-squares methods.
    covariates : dict of str to float or ndarray
        Per-voxel inputs by covariate name (scalar, or a map of the data's spatial shape).

    Settings
    --------
    The arguments of the constructor (those given, and the defaults of the others) are recorded
    when a model is built, by whichever ``__init__`` a subclass defines (:meth:`settings` gives
    them; a subclass constructor that calls ``super().__init__`` does not replace them).
    """

    model_id: str = ""
    former_names: tuple[str, ...] = ()
    command: str | None = None
    cli = CommandText()
    workflow: str = ""
    options: tuple[Option, ...] = ()
    methods: dict = {}
    default_method: str = ""
    method_aliases: dict = {}
    amplitude: str | None = None
    data_unit: str = "a.u."
    n_measurements: int = 0

    #: Constructor keywords that may hold a per-voxel map (a B1 map): recorded by :meth:`settings`
    #: only when scalar; a map is recorded by the file workflow as the file it came from.
    map_settings: tuple[str, ...] = ()

    def __init__(self, spec, acq, *, bounds: dict | None = None, initial: dict | None = None,
                 covariates: dict | None = None, lm_options=None, n_measurements: int | None = None):
        """Bind the declaration ``spec`` to an acquisition with the fit's settings: what every family's
        constructor ends with (``super().__init__(spec, acq, ...)``) once it has checked its own inputs.

        Parameters
        ----------
        spec : qmri.models.base.SignalModel
            The declaration fitted by the generic methods.
        acq : array_like
            The acquisition array of ``spec``, laid out as its kernels read it: (n_measurements, k)
            for b-values or flip angles and TR, (5, n_points) for DCE's frame times and AIF.
        bounds : dict, optional
            ``{name: (lower, upper)}`` replacing declared bounds (:func:`qmri.models.base.resolve_bounds`).
        initial : dict, optional
            ``{name: value}`` replacing declared starting values (clipped into the bounds).
        covariates : dict, optional
            Per-voxel inputs by covariate name (a scalar or a map of the data's spatial shape).
        lm_options : qmri.fitting.LMOptions, optional
            Stopping rules of the least-squares methods (default ``LMOptions()``).
        n_measurements : int, optional
            Length of the data's last axis (default the rows of ``acq``; trace DKI fits the shells
            its volumes average to).

        Raises
        ------
        QMRIInputError
            Bounds or starting values of parameters ``spec`` does not declare, or bounds that
            :func:`qmri.models.base.bound_pair` refuses.
        """
        from qmri.models.base import resolve_bounds, resolve_initial

        self.spec = spec
        self.acq = np.ascontiguousarray(acq, dtype=np.float64)
        self.n_measurements = int(self.acq.shape[0] if n_measurements is None else n_measurements)
        self.lower, self.upper = resolve_bounds(spec, bounds)
        self.initial = np.clip(resolve_initial(spec, initial), self.lower, self.upper)
        self.covariates = dict(covariates or {})
        self.lm_options = lm_options or LMOptions()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "model_id" not in cls.__dict__:
            cls.model_id = cls.__name__.lower()
        for key in (cls.model_id, cls.__name__, *cls.__dict__.get("former_names", ())):
            MODEL_IDS[key] = cls
        if cls.__dict__.get("command"):
            COMMANDS[cls.command] = cls
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording_settings(cls.__dict__["__init__"])

    # Declaration ------------------------------------------------------------------------------
    @classmethod
    def add_method(cls, method) -> None:
        """Offer ``method`` for this model (and its subclasses), e.g. a network estimator."""
        cls.methods = {**cls.methods, method.name: method}

    @classmethod
    def method(cls, name: str | None = None):
        """The :class:`~qmri.models.methods.Method` called ``name`` (default :attr:`default_method`).

        Raises
        ------
        QMRIInputError
            Unknown method.
        """
        name = cls.method_aliases.get(name, name) if name else cls.default_method
        if name not in cls.methods:
            raise QMRIInputError(f"unknown method {name!r} for {cls.__name__}; choose one of {', '.join(cls.methods)}")
        return cls.methods[name]

    @classmethod
    def parameter_names(cls) -> list[str]:
        """Names accepted by ``bounds`` (for help texts)."""
        spec = getattr(cls, "spec", None)
        return spec.names if spec is not None else []

    def output_units(self) -> dict[str, str]:
        """Units of every output parameter (the declared parameters and derived outputs)."""
        units = dict(self.spec.units)
        units.update({name: unit for name, (unit, _) in self.derived().items()})
        return units

    def output_names(self, method: str | None = None, **options) -> list[str]:
        """Names of every map ``fit(method=method, **options)`` returns, quality maps included
        (those of :attr:`FitRequest.outputs <qmri.models.request.FitRequest.outputs>`).

        Raises
        ------
        QMRIInputError
            Unknown method or option.
        """
        return list(self.request(method, **options).outputs)

    @classmethod
    def method_options(cls, method: str | None, options: dict, where=None):
        """The method called ``method`` (default :attr:`default_method`) and its options resolved: those
        given converted and checked (:func:`qmri.options.resolve`), defaults for the others. The one rule
        for a method's options, of :meth:`request` and of a cohort's configuration.

        ``where(name)``, optional, names an option in the error of a bad value (default its flag).

        Returns
        -------
        (Method, dict)

        Raises
        ------
        QMRIInputError
            Unknown method, an option the method does not use, or a bad value.
        """
        m = cls.method(method)
        others = tuple(o for other in cls.methods.values() for o in other.options)
        return m, resolve(m.options, options, f"method {m.name!r} of {cls.__name__}", others, where)

    def request(self, method: str | None = None, *, inputs: dict | None = None, affine=None, header=None,
                **options):
        """The fit ``fit(method=method, **options)`` would run, checked and resolved without fitting:
        the method, its options (defaults filled in), the maps it returns with their kinds and units.

        Parameters
        ----------
        method : str, optional
            A name in :attr:`methods`; default :attr:`default_method`.
        inputs : dict, optional
            Facts of the inputs to record in the sidecars (lower-case ``snake_case`` keys).
        affine : ndarray (4, 4), optional
            Voxel-to-world transform of the data (given to the maps).
        header : nibabel header, optional
            Header of the fitted image (kept in the written maps).
        **options
            Options of the method.

        Returns
        -------
        qmri.models.request.FitRequest

        Raises
        ------
        QMRIInputError
            Unknown method or option, an option value the method refuses, bounds set for a method
            that does not apply them, an acquisition too poor for the method, Cramér–Rao bounds
            asked of a model without them.
        """
        from qmri.maps import QUALITY_UNITS
        from qmri.models.methods import CRLB_NAMES
        from qmri.models.request import FitRequest

        m, opts = self.method_options(method, options)
        self.check_bounds_apply(m, self.bounds_set())
        self.check_method(m.name)
        outputs = {**m.output_kinds(self, opts), **dict.fromkeys(QUALITY_UNITS, "quality")}
        crlb = {k: opts.pop(k) for k in CRLB_NAMES if k in opts}
        if crlb.get("crlb"):
            self.check_crlb()
        units = {**m.output_units(self, opts), **m.vector_units(self, opts), "rmse": self.data_unit}
        return FitRequest(self, m, opts, crlb, outputs, units, dict(inputs or {}), affine, header)

    def bounds_set(self) -> list[str]:
        """Parameters whose bounds differ from the declaration's defaults (set with ``bounds=``)."""
        spec = self.spec
        return [n for n, a, b, a0, b0 in zip(spec.names, self.lower, self.upper, spec.lower, spec.upper)
                if a != a0 or b != b0]

    @classmethod
    def check_bounds_apply(cls, method, names) -> None:
        """Refuse bounds set for ``names`` when ``method`` (a name, None for the default, or a
        :class:`~qmri.models.methods.Method`) does not apply bounds (``Method.bounded``): like an
        option the method does not use, they would be recorded and reported but change nothing.

        Raises
        ------
        QMRIInputError
            ``names`` not empty and the method unbounded (the message names the methods that apply them).
        """
        m = method if hasattr(method, "bounded") else cls.method(method)
        if names and not m.bounded:
            users = ", ".join(n for n, x in cls.methods.items() if x.bounded) or "none"
            raise QMRIInputError(f"method {m.name!r} of {cls.__name__} does not apply bounds (--bounds "
                                 f"{', '.join(names)}); methods that do: {users}")

    def settings(self) -> dict:
        """The constructor arguments this model was built with, as JSON values (the acquisition, bounds,
        thresholds and other keywords; scikit-learn's ``get_params``), from which :meth:`from_provenance`
        rebuilds it.

        Arrays become lists, tuples (a pair of bounds) lists, :class:`~qmri.fitting.LMOptions` a dict
        of its fields (made ``LMOptions`` again by :meth:`recorded_settings`); a keyword of
        :attr:`map_settings` that holds a map becomes None (the map is not copied into the sidecars).

        Returns
        -------
        dict
            ``{keyword: value}`` for every argument of the constructor, defaults included.
        """
        return copy.deepcopy(self.__dict__.get("_settings", {}))

    def provenance(self) -> dict:
        """Model-specific facts written into sidecars (bounds, acquisition, references); ``model_settings``
        (:meth:`settings`) here, which a subclass extends (``{**super().provenance(), ...}``)."""
        return {"model_settings": self.settings()}

    # Rebuilding a fit (``qmri plot-fit``) ------------------------------------------------------
    @classmethod
    def from_provenance(cls, provenance: dict) -> "Model":
        """The model a fit used, rebuilt from the provenance its sidecars record: ``cls(**settings)``
        with the recorded ``model_settings`` (:meth:`recorded_settings`).

        Raises
        ------
        QMRIInputError
            The model cannot be rebuilt from what was recorded (settings missing or not this
            model's, or values the constructor refuses).
        """
        params = inspect.signature(cls).parameters
        try:
            settings = cls.recorded_settings(provenance)
            unknown = [k for k in settings if k not in params] if not any(
                p.kind is p.VAR_KEYWORD for p in params.values()) else []
            if unknown:
                raise QMRIInputError(f"{cls.__name__}: the sidecars record settings this version does not know: "
                                     f"{', '.join(unknown)}")
            return cls(**settings)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:  # values of another kind (an edited sidecar)
            raise QMRIInputError(f"{cls.__name__} cannot be rebuilt from what its sidecars record: "
                                 f"{type(exc).__name__}: {exc}") from None

    @classmethod
    def recorded_settings(cls, provenance: dict) -> dict:
        """The constructor keywords of a provenance: its ``model_settings`` (:meth:`settings`; an
        ``lm_options`` dict made :class:`~qmri.fitting.LMOptions` again), or for sidecars that
        record none (written before they did) :meth:`settings_before_recorded`."""
        settings = provenance.get("model_settings")
        if not isinstance(settings, dict):
            return cls.settings_before_recorded(provenance)
        settings = dict(settings)
        if isinstance(settings.get("lm_options"), dict):
            settings["lm_options"] = LMOptions(**settings["lm_options"])
        return settings

    @classmethod
    def settings_before_recorded(cls, provenance: dict) -> dict:
        """Constructor keywords read from the facts that sidecars written without ``model_settings`` record
        (their acquisition and bounds, by each family's own keys); default: none can be read.

        Raises
        ------
        QMRIInputError
            The model cannot be rebuilt from what was recorded.
        """
        raise QMRIInputError(f"{cls.__name__} cannot be rebuilt from its sidecars (they record no settings)")

    @staticmethod
    def recorded_bounds(provenance: dict, spec) -> dict:
        """The ``bounds`` a provenance records (every parameter, non-finite ones as None) that differ from
        the defaults of ``spec``: the ``bounds=`` that rebuild them (sidecars without ``model_settings``)."""
        out = {}
        for name, pair in (provenance.get("bounds") or {}).items():
            if name not in spec.names or not isinstance(pair, (list, tuple)) or len(pair) != 2 or None in pair:
                continue
            j = spec.names.index(name)
            if (float(pair[0]), float(pair[1])) != (float(spec.lower[j]), float(spec.upper[j])):
                out[name] = (float(pair[0]), float(pair[1]))
        return out

    # Forward model ---------------------------------------------------------------------------
    #: Parameters :meth:`predict` takes as 0 when not given (DCE: ``delay``, also when not fitted).
    optional_parameters: tuple[str, ...] = ()

    def forward_spec(self):
        """The declaration :meth:`predict` evaluates (default :attr:`spec`)."""
        return self.spec

    def predict(self, params: dict, covariates=None) -> np.ndarray:
        """Noise-free data (the forward model) for parameters given as a dict of scalars or arrays.

        Every model has this one forward method (``signal`` of the diffusion and T1 models and
        ``concentration`` of DCE are its names there).

        Parameters
        ----------
        params : dict of str to float or ndarray
            The declared parameters (:attr:`spec` names, in their units); those of
            :attr:`optional_parameters` may be left out (0).
        covariates : array_like, shape (..., n_covariates) or (n_covariates,), optional
            Per-voxel known inputs of the declaration (e.g. B1), broadcast against the
            parameters; default the declared defaults.

        Returns
        -------
        ndarray, shape ``broadcast(params).shape + (n_measurements,)``

        Raises
        ------
        KeyError
            A declared parameter is missing.
        """
        spec = self.forward_spec()
        vals = [np.asarray(params.get(k, 0.0) if k in self.optional_parameters else params[k], dtype=np.float64)
                for k in spec.names]
        if covariates is not None and spec.covariates:
            C = np.asarray(covariates, dtype=np.float64)
            arrays = np.broadcast_arrays(*vals, *np.moveaxis(C, -1, 0))
            vals, cov = arrays[:len(vals)], np.stack([a.ravel() for a in arrays[len(vals):]], axis=1)
        else:
            vals, cov = np.broadcast_arrays(*vals), None
        P = np.stack([a.ravel() for a in vals], axis=1)
        out = spec.evaluate(P, self.acq, cov)
        return out.reshape(vals[0].shape + (out.shape[-1],))

    def axis(self) -> tuple[np.ndarray, str]:
        """The values the measurements are plotted against, and their label (default: their index)."""
        return np.arange(self.n_measurements, dtype=float), "measurement"

    def curve(self, values: dict, measured, covariates=None, method: str | None = None) -> dict:
        """Measured and fitted signal of one voxel for a figure.

        Parameters
        ----------
        values : dict of str to float
            The voxel's fitted parameters (the maps' values).
        measured : ndarray (n_measurements,)
            The voxel's data as the fit saw it.
        covariates : ndarray (n_covariates,), optional
        method : str, optional
            The method that fitted it (models whose maps do not determine the signal refit the voxel).

        Returns
        -------
        dict
            ``x``, ``measured``, ``fitted`` (arrays), ``xlabel``, ``ylabel``.
        """
        P = np.array([[values[k] for k in self.spec.names]], dtype=np.float64)
        C = None if covariates is None else np.asarray(covariates, dtype=np.float64)[None, :]
        x, xlabel = self.axis()
        return {"x": x, "measured": np.asarray(measured, dtype=float), "fitted": self.spec.evaluate(P, self.acq, C)[0],
                "xlabel": xlabel, "ylabel": f"signal ({self.data_unit})"}

    def label(self) -> str:
        """Short name of the fitted model in file names (BIDS ``model-<label>``): its
        :attr:`model_id` (``ivim``, ``dki``, ``vfa``)."""
        return self.model_id

    def check_method(self, method: str) -> None:
        """Raise :class:`QMRIInputError` if the acquisition cannot support ``method``."""

    def check_crlb(self) -> None:
        """Raise :class:`QMRIInputError` if this model's maps have no Cramér–Rao bounds (``--crlb``);
        default: they have (the bounds of the declared parameters, :mod:`qmri.fitting.crlb`)."""

    # Phantom and demo (read by ``qmri phantom`` and ``qmri demo``) ----------------------------
    #: What ``qmri phantom`` offers and ``qmri demo`` fits and scores (:class:`~qmri.models.facets.Demo`).
    demo = Demo()

    @classmethod
    def has_phantom(cls) -> bool:
        """Whether :meth:`phantom` builds a phantom of this model."""
        return False

    @classmethod
    def phantom(cls, *, snr=None, seed: int = 0, block=None, **options):
        """A phantom (digital reference object) of this model with known ground truth
        (:class:`qmri.simulate.Phantom`)."""
        raise QMRIInputError(f"{cls.__name__} has no phantom")

    @classmethod
    def for_phantom(cls, ph) -> "Model":
        """The model bound to a phantom's acquisition."""
        raise NotImplementedError


    # Hooks of the generic methods -------------------------------------------------------------
    def derived(self) -> dict:
        """Outputs computed from the fitted parameters: ``{name: (unit, function(params) -> array)}``."""
        return {}

    def normalise(self, Y, C):
        """Signals as the fit sees them, with the per-voxel scale and the voxels that can be fitted.

        Returns ``(Yn (n, m) C-contiguous, scale (n,), good (n,) bool)``; the default keeps the
        signals (scale 1, every voxel good).
        """
        n = Y.shape[0]
        return np.ascontiguousarray(Y), np.ones(n), np.ones(n, dtype=bool)

    def complete(self, res: FitResult, scale, good) -> None:
        """Finish a result in place: amplitude times ``scale``, voxels not ``good`` failed, derived outputs."""
        if self.amplitude is not None:
            res.rescale(self.amplitude, scale)
        res.mark_failed(~good)
        with np.errstate(divide="ignore", invalid="ignore"):
            for name, (_, fn) in self.derived().items():
                res.params[name] = fn(res.params)

    def covariate_maps(self, spatial: tuple, order: str = "C") -> np.ndarray | None:
        """Covariates of every voxel, (prod(spatial), n_covariates) with voxels flattened in ``order``,
        or None when all are defaults.

        Raises
        ------
        QMRIInputError
            A covariate map whose shape is not ``spatial``.
        """
        spec = self.spec
        given = self.covariates
        if not spec.covariates or all(given.get(c.name) is None for c in spec.covariates):
            return None
        n = int(np.prod(spatial)) if spatial else 1
        cols = []
        for c in spec.covariates:
            v = given.get(c.name)
            v = np.asarray(c.default if v is None else v, dtype=np.float64)
            if v.ndim and v.shape != tuple(spatial):
                raise QMRIInputError(f"{c.name} map shape {v.shape} does not match data shape {tuple(spatial)}")
            cols.append(np.broadcast_to(v, spatial).reshape(n, order=order))
        return np.stack(cols, axis=1)

    # Hooks of the network estimators (:mod:`qmri.fitting.net`) -------------------------------
    #: Output ranges, training simulation, protocol and shipped networks of the network estimators
    #: (:class:`qmri.models.network.Network`, bound to the model it is read through); a family with
    #: other hooks declares a subclass, one with other values an instance with other fields.
    network = Network()

    # Fitting ---------------------------------------------------------------------------------
    def fit(self, data, mask=None, method: str | None = None, *, progress: bool = False,
            chunk_size: int = 100_000, transform=None, request=None, **options):
        """Fit every voxel of ``data`` (inside ``mask``).

        The data are read chunk by chunk in their own type and memory layout (a float32 series in
        NIfTI's Fortran order is never copied whole): only each chunk of voxels is converted to
        float64, so memory stays bounded by the data plus one chunk.

        Parameters
        ----------
        data : array_like, shape (..., n_measurements)
            Signals; the last axis runs over the acquisition the model was built with. Any
            number of leading (spatial) axes, including none.
        mask : array_like of bool, shape data.shape[:-1], optional
            Voxels to fit; default every voxel. Voxels outside get NaN.
        method : str, optional
            A name in ``self.methods``; default ``self.default_method``.
        progress : bool
            Show a tqdm progress bar over voxel chunks.
        chunk_size : int
            Voxels per chunk (bounds memory and drives the progress bar).
        transform : callable, optional
            ``transform(Y, index) -> Y'`` applied to each chunk of signals (float64, (n, m)) before
            fitting, given the voxels' flat C-order indices into the volume (``np.ravel_multi_index``
            of their positions) — e.g. signal to concentration with a per-voxel T10.
        request : qmri.models.request.FitRequest, optional
            The fit as :meth:`request` checked it (method, options, input facts, geometry); then
            ``method`` and ``options`` are not given.
        **options
            Options of the method (e.g. ``compute_se=True`` for least-squares methods); an option
            the method does not use is an error.

        Returns
        -------
        qmri.maps.ParameterMaps
            Maps of shape ``data.shape[:-1]``, with the request's geometry and its provenance
            (:meth:`qmri.models.request.Provenance.record`).

        Raises
        ------
        QMRIInputError
            Unknown method or option, acquisition too poor for the method, last axis not matching
            the acquisition, mask or covariate map of the wrong shape.
        """
        from qmri.maps import ParameterMaps
        from qmri.models.request import Provenance

        if request is None:
            request = self.request(method, **options)
        elif method is not None or options:
            raise TypeError("fit: give either request= or a method and its options, not both")
        elif request.model is not self:
            raise ValueError("fit: the request is another model's")
        m, opts, crlb = request.method, dict(request.options), request.crlb
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
        order = voxel_order(data)
        C_all = self.covariate_maps(spatial, order)
        idx = np.flatnonzero(mask.ravel(order=order))
        flat = data.reshape(-1, data.shape[-1], order=order)  # a view in either memory order
        t0 = time.perf_counter()

        def rows(sel):
            Y = np.ascontiguousarray(flat[sel], dtype=np.float64)
            if transform is None:
                return Y
            c_sel = sel if order == "C" else np.ravel_multi_index(np.unravel_index(sel, spatial, order="F"), spatial)
            return np.ascontiguousarray(transform(Y, c_sel), dtype=np.float64)

        sigma = self._noise_level(crlb.get("sigma"), spatial, order) if request.wants_crlb else None
        state, prepared = m.prepare(self, rows, idx, C_all, progress=progress, **opts)
        parts = []
        chunk_size = max(int(chunk_size), 1)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(idx), unit="vox", desc=f"{type(self).__name__} {m.name}", leave=False)
        for start in range(0, max(len(idx), 1), chunk_size):
            sel = idx[start:start + chunk_size]
            Y = rows(sel)
            C = None if C_all is None else np.ascontiguousarray(C_all[sel])
            part = m.fit(self, Y, C, **opts, **state)
            if request.wants_crlb:
                self.add_crlb(part, C, sigma if np.ndim(sigma) == 0 else sigma[sel], crlb["noise"])
            parts.append(part)
            if bar is not None:
                bar.update(len(sel))
        if bar is not None:
            bar.close()
        result = FitResult.concatenate(parts)
        seconds = time.perf_counter() - t0
        provenance = Provenance(self._fit_facts(request, len(idx), seconds), dict(prepared),
                                self._model_facts(m), self._quality_facts(m, result), dict(request.inputs))
        return ParameterMaps.from_flat(result, idx, spatial, request.units, provenance.record(), order=order,
                                       kinds=request.outputs, affine=request.affine, header=request.header)

    def _fit_facts(self, request, n_voxels: int, seconds: float) -> dict:
        """The fit's part of the provenance (:attr:`qmri.models.request.Provenance.fit`)."""
        m, crlb = request.method, request.crlb
        out = {"model": type(self).__name__, "model_id": self.model_id, "method": m.name,
               "method_description": m.description, "n_voxels": int(n_voxels), "fit_seconds": round(seconds, 4)}
        if m.reference:
            out["method_reference"] = m.reference
        opts = dict(request.options)
        if request.wants_crlb:
            opts.update({k: v for k, v in crlb.items() if np.ndim(v) == 0})
            out["crlb_noise_level"] = ("residuals: rmse * sqrt(m / (m - p)) per voxel" if crlb.get("sigma") is None
                                       else "a noise map" if np.ndim(crlb["sigma"]) else "given")
            out["crlb_reference"] = CRLB_REFERENCE
        if opts:
            out["method_options"] = opts
        return out

    def _model_facts(self, m) -> dict:
        """The model's part of the provenance: :meth:`provenance`, less the bounds when ``m`` does not
        apply them (they played no part in its estimates)."""
        out = self.provenance()
        if not m.bounded:
            out.pop("bounds", None)
            out.pop("bounds_note", None)
        return out

    def _quality_facts(self, m, result: FitResult) -> dict:
        """The quality part of the provenance: fractions at a bound (bounded methods), converged and failed."""
        at_bound = self.at_bound(result) if m.bounded else {}
        out = {"at_bound": at_bound} if at_bound else {}
        n = result.n
        out["converged_fraction"] = float(np.mean(result.status == STATUS_CONVERGED)) if n else 0.0
        out["failed_fraction"] = float(np.mean(result.status == STATUS_FAILED)) if n else 0.0
        return out

    def _noise_level(self, sigma, spatial: tuple, order: str):
        """``--sigma`` as :meth:`add_crlb` reads it: None (from each voxel's residuals), a scalar, or a
        flat (n_total,) map in ``order``."""
        if sigma is None:
            return None
        if np.ndim(sigma) == 0:
            return np.float64(sigma)
        arr = np.asarray(sigma, dtype=np.float64)
        if arr.shape != tuple(spatial):
            raise QMRIInputError(f"noise map shape {arr.shape} does not match data shape {tuple(spatial)}")
        return arr.reshape(-1, order=order)

    def add_crlb(self, res: FitResult, C, sigma=None, noise: str = "gaussian") -> None:
        """Add the Cramér–Rao lower bounds of the declared parameters at their fitted values to
        ``res.crlb``, in place (:func:`qmri.fitting.crlb.crlb`).

        Parameters
        ----------
        res : FitResult
            A completed result: the declared parameters in their units (amplitude scaled back),
            ``rmse`` in the units of the fitted data.
        C : ndarray (n, n_covariates) or None
        sigma : float or ndarray (n,), optional
            Noise level in the units of the fitted data (a voxel whose value is not positive and finite
            gets NaN bounds); None (default): each voxel's residuals, ``rmse · sqrt(m / (m − p))``
            (the unbiased residual variance for Gaussian noise).
        noise : {"gaussian", "rician"}
        """
        from qmri.fitting.crlb import crlb

        names = self.spec.names
        n, m, p = res.n, self.n_measurements, self.spec.n_params
        if sigma is None:
            s = res.rmse * np.sqrt(m / (m - p)) if m > p else np.full(n, np.nan)
        else:
            s = np.array(np.broadcast_to(sigma, (n,)), dtype=np.float64)
        P = np.stack([res.params[k] for k in names], axis=1)
        bound = crlb(self.spec, self.acq, P, s, covariates=C, noise=noise)
        bound[res.status == STATUS_FAILED] = np.nan
        res.crlb = {k: bound[:, j] for j, k in enumerate(names)}

    def at_bound(self, result: FitResult) -> dict[str, list[float]]:
        """Fraction of the fitted voxels (failed ones excluded) at the lower and at the upper bound,
        ``{name: [lower, upper]}``, for each declared parameter with a finite bound except the
        amplitude (whose bounds are relative to each voxel's signal) and fixed parameters (lower =
        upper). A value counts as at a bound
        within 1e-4 of the bounded range (or of the bound's magnitude when one side is open)."""
        spec, lower, upper = self.spec, self.lower, self.upper
        out = {}
        for j, name in enumerate(spec.names):
            lo, hi = float(lower[j]), float(upper[j])
            if (name == self.amplitude or name not in result.params or not (np.isfinite(lo) or np.isfinite(hi))
                    or lo == hi):  # a fixed parameter is not estimated
                continue
            v = result.params[name]
            v = v[np.isfinite(v)]
            span = hi - lo if np.isfinite(hi - lo) else max(abs(lo) if np.isfinite(lo) else abs(hi), 1.0)
            tol = 1e-4 * span
            n = max(v.size, 1)
            out[name] = [float(np.sum(v <= lo + tol)) / n if np.isfinite(lo) else 0.0,
                         float(np.sum(v >= hi - tol)) / n if np.isfinite(hi) else 0.0]
        return out


def _recording_settings(init):
    """``init`` (a subclass's ``__init__``) that first records its arguments, defaults included, as
    the model's settings (:meth:`Model.settings`) unless a subclass's constructor already did: as JSON
    values (:func:`_plain`; copies, which later changes to the caller's arrays do not reach), a map of
    :attr:`Model.map_settings` as None."""
    signature = inspect.signature(init)
    first = next(iter(signature.parameters))
    if any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values()):
        raise TypeError(f"{init.__qualname__}: a model's constructor cannot take *args (its settings are keywords)")

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if "_settings" not in self.__dict__:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            given = {}
            for name, value in bound.arguments.items():
                if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                    given.update(value)
                elif name != first:
                    given[name] = value
            maps = type(self).map_settings
            self._settings = {name: None if name in maps and np.ndim(value) > 0 else _plain(value)
                              for name, value in given.items()}
        init(self, *args, **kwargs)

    return __init__


def _plain(value):
    """A setting as JSON values: arrays and tuples as lists, NumPy scalars as numbers, dataclasses
    (:class:`~qmri.fitting.LMOptions`) as dicts of their fields."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return value


def voxel_order(data) -> str:
    """``"F"`` for data stored in Fortran order (as nibabel reads NIfTI), else ``"C"``: the order in
    which :meth:`Model.fit` flattens the voxels so that flattening never copies the data."""
    data = np.asarray(data)
    return "F" if (data.ndim > 1 and data.flags.f_contiguous and not data.flags.c_contiguous) else "C"


def model_class(name: str) -> type[Model]:
    """The model class of a stable id (:attr:`Model.model_id`, a sidecar's ``model_id``), a class
    name (a sidecar's ``Model``, also of sidecars written before ids were recorded) or a declared
    former name (:attr:`Model.former_names`).

    Raises
    ------
    QMRIInputError
        No such model.
    """
    import qmri.models

    qmri.models.commands()  # imports (registers) every model, with those a family's module declares beside it
    if name not in MODEL_IDS:
        known = sorted({cls.model_id for cls in MODEL_IDS.values()})
        raise QMRIInputError(f"unknown model {name!r} (known: {', '.join(known)})")
    return MODEL_IDS[name]


def parse_bounds(text: str | None) -> dict:
    """``"f=0:0.5,Dstar=0.005:0.1"`` → ``{"f": (0.0, 0.5), "Dstar": (0.005, 0.1)}``, each pair checked by
    :func:`qmri.models.base.bound_pair` (finite, lower <= upper; equal fixes the parameter).

    Raises
    ------
    QMRIInputError
        An item that is not ``NAME=LOWER:UPPER`` with two numbers, or bounds that ``bound_pair`` refuses.
    """
    from qmri.models.base import bound_pair

    out = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise QMRIInputError(f"--bounds: expected NAME=LOWER:UPPER items separated by commas, got {item!r}")
        name, value = item.split("=", 1)
        parts = value.split(":")
        try:
            nums = tuple(float(v) for v in parts)
        except ValueError:
            raise QMRIInputError(f"--bounds: {value!r} is not a number") from None
        if len(nums) != 2:
            raise QMRIInputError(f"--bounds: {name.strip()} needs LOWER:UPPER, got {value!r}")
        try:
            out[name.strip()] = bound_pair(name.strip(), nums)
        except QMRIInputError as exc:
            raise QMRIInputError(f"--bounds {item.strip()}: {exc}") from None
    return out
