"""The DCE model users hold: :class:`DCE`, a pharmacokinetic model bound to frame times and an AIF.

Fitting (:class:`DCE`): a linear least-squares estimate (each model's declared linear form,
:mod:`qmri.models.dce.linear`; AATH starts from the 2CXM's), evaluated on a 1 s grid of delays
when the delay is fitted, starts a bounded Levenberg–Marquardt fit with analytic Jacobians
(:func:`qmri.fitting.fit_lm`). Default bounds and starting values of the OSIPI tests: Ktrans and PS
0–5 /min, ve and vp 0–1, Fp 0–200 mL/min/100mL, delay ±10 s (lower bounds of ve, vp and Fp are
kept slightly above 0 where a rate would divide by them).

The whole pipeline from a DCE series (AIF choice, T10, signal to concentration) is
:func:`qmri.workflows.dce.fit_dce`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qmri.errors import QMRIInputError
from qmri.fitting.lm import LMOptions
from qmri.fitting.result import STATUS_CONVERGED, STATUS_FAILED, FitResult
from qmri.models.dce.aif import check_signal, thin
from qmri.models.dce.convolution import acquisition
from qmri.models.dce.linear import linear_coefficients, shared_columns
from qmri.models.dce.pk import DCE_MODELS, PK_MODELS, linear_form
from qmri.fitting.net.method import DNN
from qmri.models.facets import CommandText, Demo
from qmri.models.methods import LeastSquares, Method, Validation, table
from qmri.models.model import Model
from qmri.models.network import Network
from qmri.options import Option


def _fit_linear(model, Y, C):
    n = Y.shape[0]
    p0 = model.linear_estimate(Y)
    fitted = model.spec.evaluate(p0, model.acq)
    ssr = np.sum((fitted - Y) ** 2, axis=1)
    sst = np.sum((Y - Y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    bad = ~np.all(np.isfinite(Y), axis=1) | ~np.any(Y != 0, axis=1)  # as the LM engine
    with np.errstate(invalid="ignore", divide="ignore"):
        status = np.where(bad, STATUS_FAILED, STATUS_CONVERGED).astype(np.int8)
        res = FitResult.closed_form(model.spec.names, p0, status, np.sqrt(ssr / Y.shape[1]),
                                    np.where(sst > 0, 1.0 - ssr / sst, np.nan))
    model.complete(res, np.ones(n), ~bad)
    return res


def _lsq_start(model, Yn, C):
    """The linear estimate (:meth:`DCE.linear_estimate`)."""
    return model.linear_estimate(Yn)


def _lsq_refine(model, res, Yn, C):
    """The step after the first fit that the PK model declares (:attr:`qmri.models.dce.pk.PKModel.refine`;
    AATH: a second start, :func:`qmri.models.dce.pk.aath.refine`); other models are left as fitted."""
    if model.pk.refine is not None:
        model.pk.refine(model, res, Yn, C)


LSQ = LeastSquares(description="bounded Levenberg-Marquardt from the linear estimate (default)", start=_lsq_start,
                   refine=_lsq_refine)
LINEAR = Method("linear", "linear estimate only (integrated model equations; fast, biased with noise)", _fit_linear,
                reference="Murase, MRM 2004;51:858; Flouri et al., MRM 2016;76:998",
                validation=Validation(recovery=0.01, reference_cases=False, note=(
                    "an approximation (integrals by the trapezoidal rule; NRMSE up to 0.0018 on the noise-free "
                    "phantom), the start of lsq: not held to the OSIPI tolerances (21 of 260 OSIPI DCE cases "
                    "outside them)")))


#: Default tolerance (relative to the peak) of the AIF samples left out of the convolution grid.
AIF_RTOL = 1e-4

#: Longest plausible DCE series in s: clinical protocols last 5-20 min, preclinical ones up to about
#: an hour; a span above a day means another unit (ms).
MAX_SERIES_S = 86400.0


def check_frame_times(t, n_frames: int | None = None, where: str = "frame times") -> np.ndarray:
    """Frame times (s) as a strictly increasing float array: the one check of :class:`DCE` and of
    the file workflow (:func:`qmri.workflows.dce.check_times`).

    Parameters
    ----------
    t : array_like, shape (n,)
        Frame times in s.
    n_frames : int, optional
        The number of frames the series has (default: any number of at least 3).
    where : str
        What the times came from (a file, an option), named in the errors.

    Raises
    ------
    QMRIInputError
        Not 1-D, fewer than 3 (or not ``n_frames``), not finite, not strictly increasing, or
        spanning more than :data:`MAX_SERIES_S` (times in ms).
    """
    t = np.asarray(t, dtype=np.float64)
    if n_frames is not None and (t.ndim != 1 or t.size != n_frames):
        raise QMRIInputError(f"{where}: {t.size} frame times but the series has {n_frames} frames")
    if t.ndim != 1 or t.size < 3:
        raise QMRIInputError(f"{where}: frame times must be a 1-D list of at least 3 values, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise QMRIInputError(f"{where}: frame times must be finite numbers of seconds")
    if np.any(np.diff(t) <= 0):
        i = int(np.flatnonzero(np.diff(t) <= 0)[0])
        raise QMRIInputError(f"{where}: frame times must be strictly increasing; time {i + 2} "
                             f"({t[i + 1]:g} s) follows {t[i]:g} s")
    if t[-1] - t[0] > MAX_SERIES_S:
        raise QMRIInputError(f"{where}: the frames span {t[-1] - t[0]:g} s, more than a day; frame times must "
                             "be in s (times in ms: divide them by 1000)")
    return t


@dataclass(frozen=True)
class DCENetwork(Network):
    """The network facet of DCE (:class:`qmri.models.network.Network`; AIF variation and tissue prior:
    :mod:`qmri.models.dce.network`): the AIF and frame times read as channels, training on varied
    AIFs with Gaussian noise (concentrations), networks bound to the frame times, and the networks
    each pharmacokinetic model declares (:attr:`qmri.models.dce.pk.PKModel.pretrained`)."""

    def channels(self):
        """The AIF (plasma, mM) at the frame times (interpolated from its own grid) and the frame
        times (min): read by the network beside each curve, shape (2, n_frames)."""
        m = self.model
        return np.stack([np.interp(m.t, m.aif_times, m.aif), m.t / 60.0])

    def training_models(self, rng):
        """The model with :data:`~qmri.models.dce.network.N_AIFS` AIFs (its own first, then varied
        population and shifted curves, on the AIF's own grid; same frame times, bounds and delay
        setting)."""
        from qmri.models.dce.network import aif_variants

        m = self.model
        bounds = dict(zip(m.spec.names, zip(m.lower, m.upper)))
        return [DCE(m.t, cp, m.model, fit_delay=m.fit_delay, bounds=bounds, aif_times=m.aif_times)
                for cp in aif_variants(m.aif_times, m.aif, rng)]

    def sample(self, n, rng, prior=None):
        """``n`` parameter vectors (n, n_params), uniform over the model's declared tissue ranges
        (:attr:`qmri.models.dce.pk.PKModel.prior`, within the bounds), with ``prior``
        ({name: (low, high)}) on top."""
        from qmri.models.dce.network import tissue_prior
        from qmri.simulate import sample_parameters

        m = self.model
        return sample_parameters(m.spec, n, rng, lower=m.lower, upper=m.upper,
                                 prior=tissue_prior(m.pk.prior, m.spec.names, m.lower, m.upper, prior))

    def protocol(self):
        """The frame times (s) a network is bound to: ``{"frame times (s)": t}``."""
        return {"frame times (s)": self.model.t}

    def recipes(self) -> dict:
        """``dce-<name>`` for every pharmacokinetic model declaring a shipped network
        (:attr:`qmri.models.dce.pk.PKModel.pretrained`), bound to the phantom's frame times and AIF
        (its own grid)."""
        cls = self.owner

        def make(name):
            ph = cls.phantom(snr=np.inf, block=(1, 1, 1))
            return cls(np.asarray(ph.acquisition["times"]), np.asarray(ph.acquisition["aif"]), name,
                       aif_times=np.asarray(ph.acquisition["aif_times"]))

        return {f"dce-{pk.name}": (lambda name=pk.name: make(name), dict(pk.pretrained))
                for pk in PK_MODELS.values() if pk.pretrained is not None}


class DCEDemo(Demo):
    """The DCE demo: two pharmacokinetic models fitted to the phantom's concentration curves."""

    def cases(self, ph):
        """Tofts on the patches without plasma volume, extended Tofts on all, both on the concentration
        derived from the noisy signal."""
        cls = self.owner
        t, cp = np.asarray(ph.acquisition["times"]), np.asarray(ph.acquisition["aif"])
        ta = np.asarray(ph.acquisition["aif_times"])
        conc = ph.images["dce_conc"]
        return [("tofts", cls(t, cp, "tofts", aif_times=ta), conc, ph.mask & (ph.truth["vp"] == 0), "lsq"),
                ("etm", cls(t, cp, "etm", aif_times=ta), conc, ph.mask, "lsq")]


class DCE(Model):
    """A pharmacokinetic model bound to frame times and an arterial input function.

    Parameters
    ----------
    t : array_like, shape (n,)
        Frame times in s, strictly increasing (non-uniform spacing is fine).
    aif : array_like, shape (n,) or (k,)
        Plasma concentration Cp of the AIF in mM, at the frame times or, with ``aif_times``, on its
        own grid (whole-blood curves must be divided by 1 - Hct first; see
        :mod:`qmri.models.dce.aif`). Cp is linear between its samples.
    model : {"tofts", "etm", "patlak", "2cxm", "2cum", "aath"}
        Pharmacokinetic model (equations and sources: one module each in :mod:`qmri.models.dce.pk`).
    fit_delay : bool
        Also fit an arterial delay (s, bounded ±10 s; positive when the tissue arrives later than
        the AIF).
    bounds : dict, optional
        ``{name: (lower, upper)}`` overriding the default bounds (OSIPI code collection).
    initial_guess : dict, optional
        Start values used where the linear estimate is not physical.
    delay_step : float
        Spacing (s) of the delay grid searched by the linear start (default 1 s).
    lm_options : qmri.fitting.LMOptions, optional
    aif_times : array_like, shape (k,), optional
        Sample times (s) of ``aif``, strictly increasing and covering the frames: the AIF keeps
        its own resolution (e.g. a file sampled every 0.5 s while frames are 3–10 s apart, or a
        population AIF from :func:`qmri.models.dce.aif.population_samples`). The convolution runs
        on the union of both grids, exactly for the piecewise-linear AIF, the delay shifts the AIF
        on that grid, and the tissue curve is read at the frames. Default: ``aif`` is given at
        the frame times (e.g. an ROI AIF, which has the frames' resolution).
    aif_rtol : float
        With ``aif_times``: AIF samples that the straight line between their kept neighbours
        reproduces within ``aif_rtol`` × the AIF's peak are left out of the convolution grid
        (:func:`qmri.models.dce.aif.thin`; default 1e-4, far below any measurement's precision,
        keeps the bolus sampled as given and the smooth washout sparse, so that the cost grows
        with the AIF's detail, not its length). 0 uses every sample.

    Methods
    -------
    ``lsq`` (default): bounded Levenberg–Marquardt from the linear estimate. ``linear``: the
    linear estimate alone (clipped into the bounds; fast, biased with noise; not for AATH, which
    has no linear form: its ``lsq`` starts from the 2CXM's linear estimate, and from a second
    start where that fit ends at a transit time outside 1–30 s: :func:`qmri.models.dce.pk.aath.refine`).

    Outputs: the model parameters (units: :mod:`qmri.models.dce.models`) and the derived outputs
    the model declares (:attr:`qmri.models.dce.pk.PKModel.derived`): for Tofts and extended Tofts
    ``kep = Ktrans/ve`` (1/min); for AATH ``Ktrans = E Fp/100`` (1/min, ``E = 1 -
    exp(-PS/(Fp/100))``), ``kep = Ktrans/ve`` (1/min) and the capillary transit time ``Tc =
    vp/(Fp/100)`` (s).

    Raises
    ------
    QMRIInputError
        Unknown model, times not strictly increasing or not finite, AIF of the wrong length or not
        finite, bad bounds.

    Examples
    --------
    >>> import numpy as np
    >>> from qmri.models.dce import DCE
    >>> from qmri.models.dce.aif import parker
    >>> t = np.arange(0, 300, 2.0)
    >>> m = DCE(t, parker(t, delay=20.0), "tofts")
    >>> c = m.concentration(dict(Ktrans=0.2, ve=0.3))
    >>> round(float(m.fit(c[None])["Ktrans"][0]), 4)
    0.2
    """

    command = "dce"
    cli = CommandText(
        summary=f"fit a pharmacokinetic model ({', '.join(pk.label for pk in PK_MODELS.values())}) to a DCE series",
        description=("Fit a DCE-MRI pharmacokinetic model voxel by voxel. Time in s; Ktrans, kep and PS in 1/min; "
                     "Fp in mL/min/100mL; ve and vp fractions; delay and Tc in s (delay positive when the tissue "
                     "arrives after the AIF)."))
    workflow = "dce"
    data_unit = "mM"  # the fit is to concentration curves
    options = (
        Option("model", ", ".join(pk.help() for pk in PK_MODELS.values()) + "; default tofts", str, "tofts",
               choices=tuple(PK_MODELS)),
        Option("fit_delay", "also fit an arterial delay (s, bounded +-10 s)", bool, False),
    )
    methods = table(LSQ, LINEAR, DNN)
    default_method = "lsq"
    #: Network hooks; training noise Gaussian (the fit is to concentrations, not magnitudes).
    network = DCENetwork(noise="gaussian", training="pilot")

    def __init__(self, t, aif, model: str = "tofts", *, fit_delay: bool = False, bounds=None,
                 initial_guess=None, delay_step: float = 1.0, lm_options: LMOptions | None = None,
                 aif_times=None, aif_rtol: float = AIF_RTOL):
        if model not in PK_MODELS:
            raise QMRIInputError(f"unknown DCE model {model!r}; choose one of {', '.join(PK_MODELS)}")
        t = check_frame_times(t)
        cp = np.asarray(aif, dtype=np.float64)
        ta = t if aif_times is None else np.asarray(aif_times, dtype=np.float64)
        if cp.shape != ta.shape:
            raise QMRIInputError(f"AIF has {cp.size} samples but there are {ta.size} "
                                 + ("frame times" if aif_times is None else "AIF times"))
        if not np.all(np.isfinite(cp)):
            raise QMRIInputError("AIF contains non-finite values")
        if aif_times is not None:
            if ta.ndim != 1 or ta.size < 2 or not np.all(np.isfinite(ta)) or np.any(np.diff(ta) <= 0):
                raise QMRIInputError("AIF times must be finite and strictly increasing (s), at least 2")
            tol = 1e-6 * max(1.0, abs(t[-1]))
            if ta[0] > t[0] + tol or ta[-1] < t[-1] - tol:
                raise QMRIInputError(f"the AIF covers {ta[0]:g}-{ta[-1]:g} s but the frames run from {t[0]:g} "
                                     f"to {t[-1]:g} s")
        check_signal(ta, cp, t)
        self.model = model
        self.pk = PK_MODELS[model]
        self.fit_delay = bool(fit_delay)
        self.t = t
        self.aif = cp
        self.aif_times = ta
        self.delay_step = float(delay_step)
        if aif_times is None:
            acq = acquisition(t, cp)
        else:
            keep = thin(ta, cp, float(aif_rtol) * float(np.max(np.abs(cp))))
            acq = acquisition(t, cp[keep], ta[keep])
        super().__init__(DCE_MODELS[(model, self.fit_delay)], acq, bounds=bounds, initial=initial_guess,
                         lm_options=lm_options, n_measurements=t.size)
        self._delays = self._delay_grid()
        self._X = shared_columns(linear_form(self.pk), self.acq, self._delays)

    # Forward model ---------------------------------------------------------------------------
    #: ``delay`` (s) may be given to :meth:`predict`, default 0, also when it is not fitted.
    optional_parameters = ("delay",)

    def forward_spec(self):
        """The model with a delay (0 when not given), whatever :attr:`fit_delay` is."""
        return DCE_MODELS[(self.model, True)]

    def concentration(self, params) -> np.ndarray:
        """Noise-free tissue concentration (mM) for parameters given as a dict of scalars or arrays:
        :meth:`~qmri.models.model.Model.predict`.

        Keys are the model's parameter names (``delay`` in s may be given, default 0, also when the
        delay is not fitted). Returns shape ``broadcast(params).shape + (n,)``.
        """
        return self.predict(params)

    # Phantom and demo --------------------------------------------------------------------------
    demo = DCEDemo(parameters=("Ktrans", "ve", "vp"), phantom={"snr": 20.0, "block": (10, 10, 1)})

    @classmethod
    def has_phantom(cls) -> bool:
        return True

    @classmethod
    def phantom(cls, *, snr=None, seed: int = 0, block=None):
        """The DCE phantom (:func:`qmri.models.dce.phantom.dce_phantom`; SNR 20 by default)."""
        from qmri.models.dce.phantom import dce_phantom

        return dce_phantom(snr=20.0 if snr is None else snr, seed=seed, block=block)

    # Declaration hooks -------------------------------------------------------------------------
    @classmethod
    def parameter_names(cls) -> list[str]:
        """Every declared model's parameters, in order of first appearance, and ``delay``."""
        names = [spec.names for spec in DCE_MODELS.values()]
        return list(dict.fromkeys(n for group in names for n in group if n != "delay")) + ["delay"]

    #: Ktrans within this fraction of its bounded range above its lower bound counts as zero (no
    #: leakage seen): there ``ve`` is not determined by the data.
    KTRANS_ZERO_RTOL = 1e-6

    def complete(self, res, scale, good) -> None:
        """As :meth:`Model.complete <qmri.models.model.Model.complete>`, and for models declaring
        :attr:`~qmri.models.dce.pk.PKModel.ve_requires_ktrans` (Tofts and extended Tofts) ``ve``
        (hence ``kep``) NaN where Ktrans is at its lower bound (0 by default): with no transfer
        into the extravascular space the curve does not depend on ve, which is then not an
        estimate but the optimiser's start (Tofts et al., JMRI 1999;10:223: ve is defined through
        Ktrans/kep). The voxel's status stays converged (Ktrans = 0 is its estimate)."""
        if self.pk.ve_requires_ktrans and "ve" in res.params and "Ktrans" in res.params:
            j = self.spec.names.index("Ktrans")
            lo, hi = float(self.lower[j]), float(self.upper[j])
            zero = res.params["Ktrans"] <= lo + self.KTRANS_ZERO_RTOL * (hi - lo)
            res.params["ve"] = np.where(zero, np.nan, res.params["ve"])
        super().complete(res, scale, good)

    def derived(self):
        """The derived outputs the model declares (:attr:`qmri.models.dce.pk.PKModel.derived`):
        ``kep = Ktrans / ve`` (1/min) for Tofts and extended Tofts; for AATH ``Ktrans = E f``
        (1/min; ``f = Fp/100``, extraction fraction ``E = 1 - exp(-PS/f)``), ``kep = Ktrans / ve``
        (1/min) and the capillary transit time ``Tc = vp / f`` (s) (St Lawrence & Lee, JCBFM
        1998;18:1365)."""
        return dict(self.pk.derived)

    def check_method(self, method: str) -> None:
        """``linear`` is refused for a PK model without a linear form (AATH: its response is shifted
        by the transit time Tc, so no integrated equation is linear in its parameters)."""
        if method == "linear" and self.pk.linear is None:
            raise QMRIInputError(f"DCE {self.model} has no linear form (its lsq fit starts from the "
                                 f"{self.pk.start_from} linear estimate); use --method lsq")

    @classmethod
    def settings_before_recorded(cls, provenance: dict) -> dict:
        """Sidecars without ``model_settings``: the recorded frame times, AIF (its own grid), model,
        delay setting and bounds."""
        keys = ("frame_times_s", "aif_plasma_mm", "aif_times_s", "pk_model")
        if any(k not in provenance for k in keys) or provenance["pk_model"] not in PK_MODELS:
            raise QMRIInputError("DCE: the sidecars record no frame times, AIF and model")
        fit_delay = bool(provenance.get("fit_delay"))
        return {"t": provenance["frame_times_s"], "aif": provenance["aif_plasma_mm"], "model": provenance["pk_model"],
                "fit_delay": fit_delay, "aif_times": provenance["aif_times_s"],
                "bounds": cls.recorded_bounds(provenance, DCE_MODELS[(provenance["pk_model"], fit_delay)])}

    def axis(self):
        return self.t, "time (s)"

    def curve(self, values, measured, covariates=None, method=None):
        return {"x": self.t, "measured": np.asarray(measured, dtype=float), "fitted": self.concentration(values),
                "xlabel": "time (s)", "ylabel": "concentration (mM)"}

    def label(self) -> str:
        """The pharmacokinetic model (``tofts``, ``etm``, ``patlak``, ``2cxm``, ``2cum``, ``aath``)."""
        return self.model

    def describe(self, method: str) -> str:
        return (f"DCE {self.model}{' with fitted delay' if self.fit_delay else ''}, method {method}, "
                f"{self.t.size} frames over {self.t[-1] - self.t[0]:g} s")

    def provenance(self):
        return {
            **super().provenance(),
            "pk_model": self.model,
            "fit_delay": self.fit_delay,
            "frame_times_s": self.t.tolist(),
            "aif_times_s": self.aif_times.tolist(),
            "aif_plasma_mm": self.aif.tolist(),
            "aif_points_convolved": int(self.acq.shape[1]),
            "bounds": {n: [float(a), float(b)] for n, a, b in zip(self.spec.names, self.lower, self.upper)},
            "delay_convention": "positive when the tissue curve arrives later than the AIF",
            "reference": self.spec.reference,
        }

    # Starting values ---------------------------------------------------------------------------
    def _delay_grid(self):
        if not self.fit_delay:
            return np.zeros(1)
        j = self.spec.names.index("delay")
        lo, hi = self.lower[j], self.upper[j]
        if self.delay_step <= 0:
            raise QMRIInputError(f"delay step must be positive, got {self.delay_step}")
        grid = np.arange(np.ceil(lo / self.delay_step), np.floor(hi / self.delay_step) + 1) * self.delay_step
        return grid if grid.size else np.array([0.5 * (lo + hi)])

    def linear_estimate(self, Y) -> np.ndarray:
        """Starting values (n, n_params) from the linear integrated forms (clipped into the bounds)."""
        form = linear_form(self.pk)
        coef, best = linear_coefficients(form, self.t / 60.0, Y, self._X)
        with np.errstate(divide="ignore", invalid="ignore"):
            vals = form.to_parameters(coef)
        if self.fit_delay:
            vals.append(np.where(best >= 0, self._delays[np.maximum(best, 0)], np.nan))
        P = np.stack(vals, axis=1)
        bad = ~np.isfinite(P) | (P < self.lower) | (P > self.upper)
        # keep physical estimates; replace the others by the default start (delay: clip)
        P = np.where(bad, self.initial[None, :], P)
        return np.ascontiguousarray(np.clip(P, self.lower, self.upper))
