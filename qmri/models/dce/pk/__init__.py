"""The pharmacokinetic models of ``qmri dce``: one module each, one line each in :data:`MODULES`.

Each module declares one :class:`PKModel`, named ``MODEL``: its parameters, its Numba kernels
(with and without a fitted delay), its torch twin, its linear form (or the model whose linear
form starts its fit), its derived outputs, its network training prior, its reference and, where
a network is shipped for it, the recipe that trains it. :class:`qmri.models.dce.DCE` derives its
``--model`` choices, help, signal declarations (:data:`DCE_MODELS`, bound by :func:`register`),
starting values and derived outputs from :data:`PK_MODELS`; ``tools/make_pretrained.py`` its DCE
recipes. Adding a pharmacokinetic model is one module here and one line in :data:`MODULES`
(``docs/adding-a-model.md``).

=========  ==============  ======================================================
name       module          model
=========  ==============  ======================================================
tofts      ``tofts``       Tofts
etm        ``etm``         extended Tofts
patlak     ``patlak``      Patlak
2cxm       ``twocxm``      two-compartment exchange
2cum       ``twocum``      two-compartment uptake
aath       ``aath``        adiabatic approximation to the tissue homogeneity model
=========  ==============  ======================================================

Units and conventions (OSIPI CAPLEX; :mod:`qmri.models.dce.models`): time in s at the interface
and in min inside the kernels, ``Ktrans`` and ``PS`` in 1/min, ``Fp`` in mL/min/100mL, ``ve`` and
``vp`` fractions, ``delay`` in s.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from qmri.models.base import Parameter, SignalModel, register as register_signal
from qmri.models.dce.convolution import acquisition, frame_count

#: Default delay bounds (s), OSIPI code collection.
DELAY_BOUNDS = (-10.0, 10.0)

#: The parameters the models share, with the default bounds and starting values of the OSIPI code
#: collection (lower bounds of ve, vp and Fp kept slightly above 0 where a rate divides by them).
#: ``vp+`` is ``vp`` for the two-compartment models, which divide by it.
PARAMETERS = {
    "Ktrans": Parameter("Ktrans", "1/min", 0.0, 5.0, 0.1, "volume transfer constant"),
    "ve": Parameter("ve", "", 1e-3, 1.0, 0.2, "extravascular extracellular volume fraction"),
    "vp": Parameter("vp", "", 0.0, 1.0, 0.02, "plasma volume fraction"),
    "vp+": Parameter("vp", "", 1e-3, 1.0, 0.05, "plasma volume fraction"),
    "Fp": Parameter("Fp", "mL/min/100mL", 1e-2, 200.0, 20.0, "plasma flow"),
    "PS": Parameter("PS", "1/min", 0.0, 5.0, 0.05, "permeability-surface area product per unit tissue volume"),
    "delay": Parameter("delay", "s", DELAY_BOUNDS[0], DELAY_BOUNDS[1], 0.0,
                       "arterial delay, positive when the tissue curve arrives after the AIF"),
}

#: Ranges of simulated training parameters shared by the models' network priors (tissue values,
#: each clipped to the model's bounds): Ktrans, ve, vp as DCE-NET's training ranges (Ottens et al.,
#: Med Image Anal 2022;80:102512: kep 0.1–2 /min, ve 0.01–0.7, vp 0.001–0.05; here Ktrans 0–1 /min
#: and vp 0–0.1), Fp and PS for the two-compartment models. A delay is drawn over its bounds.
TISSUE_RANGES = {"Ktrans": (0.0, 1.0), "ve": (0.01, 0.7), "vp": (0.0, 0.1), "Fp": (1.0, 150.0), "PS": (0.0, 1.0)}


def tissue_prior(*names: str) -> dict:
    """The ranges of :data:`TISSUE_RANGES` for parameters ``names`` (a model's network prior)."""
    return {name: TISSUE_RANGES[name] for name in names}


@dataclass(frozen=True)
class LinearForm:
    """A linear form of a model: ``C = Σ β_a col_a``, solved by least squares for each voxel.

    Attributes
    ----------
    voxel_columns : int
        How many of the voxel's own columns (-∫C, -∫∫C) the form uses (0, 1 or 2).
    shared_columns : tuple of int
        The voxel-independent columns used, as indices into (Cp(τ), ∫Cp, ∫∫Cp).
    to_parameters : callable
        ``beta`` (n, n_columns; voxel columns first) -> list of arrays (n,), the model's
        parameters in declared order without the delay (NaN where not physical).
    reference : str
        Source of the integrated equation.
    """

    voxel_columns: int
    shared_columns: tuple[int, ...]
    to_parameters: Callable
    reference: str


@dataclass(frozen=True)
class PKModel:
    """The declaration of one pharmacokinetic model.

    Attributes
    ----------
    name : str
        The ``--model`` value and the BIDS ``model-`` label (e.g. ``"tofts"``).
    label : str
        Its name in text (e.g. ``"extended Tofts"``, ``"2CXM"``).
    parameters : tuple of str
        Keys of :data:`PARAMETERS`, in the order of the kernels' parameter vector (a fitted delay is
        appended after them).
    kernels, delay_kernels : tuple of 3 callables
        Numba ``(signal, jacobian, signal_jacobian)`` without and with a fitted delay, following
        the conventions of :mod:`qmri.models.base` on the acquisition array of
        :func:`qmri.models.dce.convolution.acquisition`.
    torch_signal : callable
        ``torch_signal(params, acq, delay_index)``: the same equation in torch, batched over voxels
        (``delay_index`` the column of the delay in s, or None).
    reference : str
        Source of the equation.
    title : str, optional
        A longer name for the help text (e.g. the meaning of an acronym).
    linear : LinearForm, optional
        The model's linear form: the ``linear`` method and the start of ``lsq``.
    start_from : str, optional
        For a model without a linear form: the model (same parameters) whose linear estimate starts
        ``lsq``; ``linear`` is then refused.
    derived : mapping, optional
        ``{name: (unit, function of the parameter dict)}``: outputs computed from the fit.
    prior : mapping, optional
        ``{name: (low, high)}``: uniform ranges of the network's training parameters (clipped to
        the bounds; parameters not named are drawn over their bounds).
    ve_requires_ktrans : bool
        ``ve`` is set to NaN where Ktrans is at its lower bound (no transfer: the curve does not
        depend on ve).
    refine : callable, optional
        ``refine(model, res, Yn, C)``: a step of ``lsq`` after the first fit (e.g. a second start).
    pretrained : mapping, optional
        Training keywords of the network shipped for this model (``tools/make_pretrained.py``,
        file ``dce-<name>.pt``); None: none is shipped.
    """

    name: str
    label: str
    parameters: tuple[str, ...]
    kernels: tuple[Callable, Callable, Callable]
    delay_kernels: tuple[Callable, Callable, Callable]
    torch_signal: Callable
    reference: str
    title: str = ""
    linear: LinearForm | None = None
    start_from: str | None = None
    derived: Mapping[str, tuple[str, Callable]] = field(default_factory=dict)
    prior: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    ve_requires_ktrans: bool = False
    refine: Callable | None = None
    pretrained: Mapping | None = None

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """The parameter names (without a delay)."""
        return tuple(PARAMETERS[k].name for k in self.parameters)

    def help(self) -> str:
        """``name [= title] (parameters[; derived ...])``, for the ``--model`` option's help."""
        extra = f"; derived {', '.join(self.derived)}" if self.derived else ""
        title = f" = {self.title}" if self.title else ""
        return f"{self.name}{title} ({', '.join(self.parameter_names)}{extra})"


def example_aif(t):
    """A smooth bolus-like test input Cp(t) (mM) at times t (s): zero until 10 s, peak 8 mM at 12.4 s."""
    tm = np.maximum(np.asarray(t, float) - 10.0, 0.0) / 60.0
    return 8.0 * (tm / 0.04) * np.exp(1.0 - tm / 0.04) + 1.2 * (1.0 - np.exp(-tm / 0.1)) * np.exp(-0.2 * tm)


def _example_acquisition():
    # non-uniform frame times (s): dense at the bolus, sparse later; the AIF on its own 0.7 s grid
    t = np.concatenate([np.arange(0.0, 60.0, 2.0), 60.0 + np.cumsum(np.linspace(3.0, 9.0, 30))])
    ta = np.arange(0.0, t[-1] + 0.7, 0.7)
    return acquisition(t, example_aif(ta), aif_times=ta)


_ACQ_DOC = ("shape (5, n_points), one column per time point of the AIF's grid and the frames (see acquisition()): "
            "acq[0]: time in s (strictly increasing); acq[1]: plasma concentration Cp of the AIF in mM; acq[2]: time "
            "in min; acq[3]: slope of Cp per segment in mM/min; acq[4]: 1 for a frame (a measurement), 0 else")
#: The declared models by name, in display order.
PK_MODELS: dict[str, PKModel] = {}
#: Their signal declarations by (name, fit_delay), registered in :data:`qmri.models.base.SIGNAL_MODELS`
#: as ``dce_<name>`` and ``dce_<name>_delay``.
DCE_MODELS: dict[tuple[str, bool], SignalModel] = {}


def register(model: PKModel) -> PKModel:
    """Add ``model`` to :data:`PK_MODELS` and its signal declarations, without and with a fitted
    delay (appended as the last parameter), to :data:`DCE_MODELS`; returns it. Raises ValueError
    for a name already taken or a parameter not in :data:`PARAMETERS`."""
    if model.name in PK_MODELS:
        raise ValueError(f"a DCE model named {model.name!r} is already registered")
    unknown = [k for k in model.parameters if k not in PARAMETERS]
    if unknown:
        raise ValueError(f"DCE model {model.name!r}: unknown parameters {unknown}; declared: {list(PARAMETERS)}")
    for delay in (False, True):
        signal, jacobian, signal_jacobian = model.delay_kernels if delay else model.kernels
        index = len(model.parameters) if delay else None
        DCE_MODELS[(model.name, delay)] = register_signal(SignalModel(
            name=f"dce_{model.name}" + ("_delay" if delay else ""),
            parameters=tuple(PARAMETERS[k] for k in model.parameters) + ((PARAMETERS["delay"],) if delay else ()),
            signal=signal,
            jacobian=jacobian,
            signal_jacobian=signal_jacobian,
            torch_signal=lambda P, a, c=None, _f=model.torch_signal, _d=index: _f(P, a, _d),
            acquisition_doc=_ACQ_DOC,
            example_acquisition=_example_acquisition,
            measurements=frame_count,
            reference=model.reference + "; exact recursive convolution for piecewise-linear Cp",
        ))
    PK_MODELS[model.name] = model
    return model


#: The registration: the modules of this package declaring the models, in display order.
MODULES = ("tofts", "etm", "patlak", "twocxm", "twocum", "aath")
for _module in MODULES:
    register(importlib.import_module(f"{__name__}.{_module}").MODEL)


def linear_form(model: PKModel) -> LinearForm:
    """The linear form that starts ``model``'s fit: its own, else that of :attr:`PKModel.start_from`."""
    return model.linear if model.linear is not None else PK_MODELS[model.start_from].linear


__all__ = ["DCE_MODELS", "DELAY_BOUNDS", "LinearForm", "MODULES", "PARAMETERS", "PKModel", "PK_MODELS",
           "TISSUE_RANGES", "example_aif", "linear_form", "register", "tissue_prior"]
