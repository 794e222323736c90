"""Trace (powder) diffusion kurtosis for body imaging: :class:`TraceDKI`.

Signal (Jensen et al., MRM 2005;53:1432; body DKI review: Rosenkrantz et al., JMRI 2015;42:1190,
doi:10.1002/jmri.24985)::

    S(b) = S0 exp(−b D + b² D² K / 6)

fitted per voxel by bounded Levenberg–Marquardt with 1e-6 <= D <= 0.005 mm²/s and 0 <= K <= 3, on
the direction-averaged signal of each b-shell (or on each volume as its own b-value when no
b-vectors are given: already trace-weighted images).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qmri.errors import QMRIInputError
from qmri.fitting.lm import LMOptions
from qmri.jit import njit
from qmri.models.base import Parameter, SignalModel, register
from qmri.models.diffusion.acquisition import (B0_THRESHOLD, DiffusionModel, DiffusionNetwork, check_b0_threshold,
                                               check_bvals, check_bvecs, normalise_to_lowest_b, powder_average)
from qmri.fitting.net.method import DNN
from qmri.models.methods import LeastSquares, table


@njit(cache=True)
def dki_trace_signal(p, acq, cov, out):
    """``S0 exp(-b D + b² D² K / 6)``; ``p = (S0, D, K)``, ``acq[:, 0]`` = b (s/mm²)."""
    S0, D, K = p[0], p[1], p[2]
    for i in range(acq.shape[0]):
        b = acq[i, 0]
        out[i] = S0 * np.exp(-b * D + b * b * D * D * K / 6.0)


@njit(cache=True)
def dki_trace_jacobian(p, acq, cov, J):
    S0, D, K = p[0], p[1], p[2]
    for i in range(acq.shape[0]):
        b = acq[i, 0]
        e = np.exp(-b * D + b * b * D * D * K / 6.0)
        J[i, 0] = e
        J[i, 1] = S0 * e * (-b + b * b * D * K / 3.0)
        J[i, 2] = S0 * e * b * b * D * D / 6.0


@njit(cache=True)
def dki_trace_signal_jacobian(p, acq, cov, out, J):
    """Signal and Jacobian in one pass (one exponential per b-value)."""
    S0, D, K = p[0], p[1], p[2]
    for i in range(acq.shape[0]):
        b = acq[i, 0]
        e = np.exp(-b * D + b * b * D * D * K / 6.0)
        out[i] = S0 * e
        J[i, 0] = e
        J[i, 1] = S0 * e * (-b + b * b * D * K / 3.0)
        J[i, 2] = S0 * e * b * b * D * D / 6.0


def dki_trace_signal_torch(params, acq, cov=None):
    """Trace DKI in torch: ``params`` (N, 3) as (S0, D, K), ``acq`` (n, 1) → (N, n)."""
    import torch

    b = acq[:, 0]
    S0, D, K = (params[:, j:j + 1] for j in range(3))
    return S0 * torch.exp(-b * D + b * b * D * D * K / 6.0)


DKI_TRACE_MODEL = register(SignalModel(
    name="dki_trace",
    parameters=(
        Parameter("S0", "a.u.", 0.1, 100.0, 1.0,
                  "signal at b=0; bounds relative to the mean signal at the lowest b-value"),
        Parameter("D", "mm2/s", 1e-6, 0.005, 0.0012, "apparent diffusion coefficient (kurtosis-corrected)"),
        Parameter("K", "", 0.0, 3.0, 0.8, "apparent kurtosis"),
    ),
    signal=dki_trace_signal,
    jacobian=dki_trace_jacobian,
    signal_jacobian=dki_trace_signal_jacobian,
    torch_signal=dki_trace_signal_torch,
    acquisition_doc="acq[:, 0]: b-values in s/mm2 (direction-averaged or trace-weighted images)",
    example_acquisition=lambda: np.array([0, 200, 500, 800, 1000, 1500, 2000.0])[:, None],
    reference="Jensen et al., MRM 2005;53:1432; body DKI review: Rosenkrantz et al., JMRI 2015;42:1190",
))


def lsq_start(model, Yn, C):
    """Start of ``lsq``: a log-quadratic fit in b (b in ms/µm² for conditioning), clipped into the bounds."""
    good = ~np.all(np.isnan(Yn), axis=1)  # rows the normalisation could not scale are all NaN
    bs = model.bvals / 1000.0
    Xq = np.stack([np.ones_like(bs), -bs, bs * bs], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.log(np.clip(np.where(good[:, None], Yn, 1.0), 1e-6, None)) @ np.linalg.pinv(Xq).T
        D0 = coef[:, 1] * 1e-3
        D0 = np.clip(np.where(np.isfinite(D0), D0, model.spec.initial[1]), model.lower[1], model.upper[1])
        K0 = 6.0 * coef[:, 2] / (D0 * 1e3) ** 2
        K0 = np.clip(np.where(np.isfinite(K0), K0, model.spec.initial[2]), model.lower[2], model.upper[2])
        S00 = np.clip(np.exp(coef[:, 0]), model.lower[0], model.upper[0])
    return np.stack([np.where(np.isfinite(S00), S00, 1.0), D0, K0], axis=1)


@dataclass(frozen=True)
class TraceDKINetwork(DiffusionNetwork):
    """The network facet of trace DKI (:class:`qmri.models.diffusion.acquisition.DiffusionNetwork`):
    a series with b-vectors is trained on its direction-averaged shells."""

    def training_models(self, rng):
        """With b-vectors, ``[the model of the shells alone]`` (same bounds): simulated training
        signals are the direction-averaged signals that ``normalise`` gives the network; without,
        ``[model]``."""
        model = self.model
        if not model.averaged:
            return [model]
        return [TraceDKI(model.bvals, bounds=dict(zip(model.spec.names, zip(model.lower, model.upper))))]


class TraceDKI(DiffusionModel):
    """Trace (powder) DKI, ``S = S0 exp(-b D + b² D² K/6)``, on direction-averaged images.

    Parameters
    ----------
    bvals : array_like, shape (n,)
        b-values (s/mm²) of the images (b=0 need not be present).
    bvecs : array_like, shape (n, 3), optional
        Gradient directions: the volumes of each b-shell (b rounded to 50 s/mm²) are averaged
        before fitting (the powder average). Without them each volume is fitted as its own
        b-value (already trace-weighted images).
    bounds : dict, optional
        ``{name: (lower, upper)}`` overriding the defaults (S0 0.1–100 relative to the mean
        signal at the lowest b-value, D 1e-6–0.005 mm²/s, K 0–3).
    b0_threshold : float
        b (s/mm²) at or below which a volume belongs to the b = 0 shell of the powder average
        (default 50, dipy's).
    lm_options : qmri.fitting.LMOptions, optional

    Notes
    -----
    The start is a log-quadratic least-squares fit (``log S = a − b D + b² c``, K = 6c/D²)
    clipped into the bounds; then bounded Levenberg–Marquardt on the signals normalised by the
    mean signal at the lowest b-value.

    Raises
    ------
    QMRIInputError
        Fewer than 3 distinct b-values; bad b-values, b-vectors or bounds.
    """

    methods = table(LeastSquares(description="bounded Levenberg-Marquardt fit of (S0, D, K) from a "
                                             "log-quadratic start", start=lsq_start), DNN)
    default_method = "lsq"
    spec = DKI_TRACE_MODEL
    kurtosis_pair = ("D", "K")
    network = TraceDKINetwork()
    min_distinct_b = 3
    valid_b_max = 3000.0
    valid_b_reason = ("the kurtosis expansion holds up to about 2000-3000 s/mm2 in tissue (Jensen & Helpern, NMR "
                      "Biomed 2010;23:698)")

    def __init__(self, bvals, *, bvecs=None, bounds=None, b0_threshold: float = B0_THRESHOLD,
                 lm_options: LMOptions | None = None):
        b_raw = check_bvals(bvals)
        self.raw_bvals = b_raw
        self.averaged = bvecs is not None
        self.b0_threshold = check_b0_threshold(b0_threshold)
        if self.averaged:
            check_bvecs(b_raw, bvecs, b0_threshold=self.b0_threshold)
            b_fit = powder_average(np.zeros(b_raw.size), b_raw, bvecs, self.b0_threshold)[1]
        else:
            b_fit = b_raw
        super().__init__(b_fit, bounds=bounds,
                         lm_options=lm_options or LMOptions(max_iter=200, xtol=1e-10, ftol=1e-14, gtol=1e-14))
        self._bvecs = bvecs
        self.n_measurements = b_raw.size  # the volumes, averaged into the shells of bvals by normalise

    def describe(self, method: str) -> str:
        how = "direction-averaged per b-shell" if self.averaged else "one b-value per volume"
        return (f"trace DKI ({how}), {self.bvals.size} b-values: {', '.join(f'{v:g}' for v in self.bvals)} s/mm2")

    def provenance(self) -> dict:
        prov = super().provenance()
        prov.update({"volume_bvals": self.raw_bvals.tolist(), "b0_threshold": self.b0_threshold,
                     "bvecs": None if self._bvecs is None else np.asarray(self._bvecs).tolist()})
        return prov

    @classmethod
    def settings_before_recorded(cls, provenance: dict) -> dict:
        """Sidecars without ``model_settings``: the recorded volumes' b-values (and b-vectors, when
        averaged), ``b0_threshold`` and bounds."""
        if "bvals" not in provenance:
            raise QMRIInputError(f"{cls.__name__}: the sidecars record no b-values")
        return {"bvals": provenance.get("volume_bvals", provenance["bvals"]), "bvecs": provenance.get("bvecs"),
                "b0_threshold": provenance.get("b0_threshold", B0_THRESHOLD),
                "bounds": cls.recorded_bounds(provenance, cls.spec)}

    def curve(self, values, measured, covariates=None, method=None):
        """Measured: the direction-averaged shells (when averaged); fitted: the trace DKI signal there."""
        y = np.asarray(measured, dtype=np.float64)
        if self.averaged:
            y = powder_average(y, self.raw_bvals, self._bvecs, self.b0_threshold)[0]
        return {"x": self.bvals, "measured": y, "fitted": self.signal(values), "xlabel": "b (s/mm2)",
                "ylabel": f"signal ({self.data_unit})"}

    def normalise(self, Y, C):
        if self.averaged:
            Y = powder_average(Y, self.raw_bvals, self._bvecs, self.b0_threshold)[0]
        return normalise_to_lowest_b(Y, self.bvals)
