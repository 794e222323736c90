"""ADC: the mono-exponential apparent diffusion coefficient, the most used diffusion map in body oncology.

Signal (Stejskal & Tanner, J Chem Phys 1965;42:288; Le Bihan et al., Radiology 1986;161:401)::

    S(b) = S0 · exp(-b · ADC)

with b in s/mm² and ADC in mm²/s. With low b-values (< ~200 s/mm²) the ADC includes perfusion;
select b-values with ``--bmin``/``--bmax`` (or pass the subset) for a perfusion-free ADC.

Methods
-------
``wls`` (default)
    Log-linear least squares ``log S = log S0 - b ADC`` weighted by the squared predicted signal,
    from an ordinary least-squares start (one reweighting; Veraart et al., NeuroImage 2013;81:335,
    doi:10.1016/j.neuroimage.2013.05.028), by :func:`qmri.fitting.linear.solve_loglinear`.
``lsq``
    Bounded Levenberg–Marquardt fit of the signal from the ``wls`` solution.
"""

from __future__ import annotations

import numpy as np

from qmri.fitting.linear import solve_loglinear
from qmri.fitting.result import STATUS_CONVERGED, STATUS_FAILED, FitResult
from qmri.jit import FASTMATH, njit
from qmri.models.base import Parameter, SignalModel, register
from qmri.models.diffusion.acquisition import DiffusionDemo, DiffusionModel, DiffusionNetwork
from qmri.models.facets import CommandText
from qmri.fitting.net.method import DNN
from qmri.models.methods import LeastSquares, Method, table


@njit(cache=True)
def adc_signal(p, acq, cov, out):
    """``S0 exp(-b ADC)``; ``p = (S0, ADC)``, ``acq[:, 0]`` = b (s/mm²)."""
    for i in range(acq.shape[0]):
        out[i] = p[0] * np.exp(-acq[i, 0] * p[1])


@njit(cache=True)
def adc_jacobian(p, acq, cov, J):
    """Analytic ∂S/∂(S0, ADC), shape (n_b, 2)."""
    for i in range(acq.shape[0]):
        e = np.exp(-acq[i, 0] * p[1])
        J[i, 0] = e
        J[i, 1] = -acq[i, 0] * p[0] * e


@njit(cache=True, fastmath=FASTMATH)
def adc_signal_jacobian(p, acq, cov, out, J):
    """Signal and Jacobian in one pass (one exponential per b-value)."""
    for i in range(acq.shape[0]):
        e = np.exp(-acq[i, 0] * p[1])
        out[i] = p[0] * e
        J[i, 0] = e
        J[i, 1] = -acq[i, 0] * p[0] * e


def adc_signal_torch(params, acq, cov=None):
    """ADC signal in torch: ``params`` (N, 2) as (S0, ADC), ``acq`` (n_b, 1) → (N, n_b)."""
    import torch

    return params[:, 0:1] * torch.exp(-acq[:, 0] * params[:, 1:2])


ADC_MODEL = register(SignalModel(
    name="adc",
    parameters=(
        Parameter("S0", "a.u.", 0.5, 2.0, 1.0,
                  "signal at b=0; bounds relative to the mean signal at the lowest b-value"),
        Parameter("ADC", "mm2/s", 0.0, 0.005, 0.001, "apparent diffusion coefficient"),
    ),
    signal=adc_signal,
    jacobian=adc_jacobian,
    signal_jacobian=adc_signal_jacobian,
    torch_signal=adc_signal_torch,
    acquisition_doc="acq[:, 0]: b-values in s/mm2",
    example_acquisition=lambda: np.array([0, 50, 100, 200, 400, 600, 800, 1000.0])[:, None],
    reference="Stejskal & Tanner, J Chem Phys 1965;42:288; Le Bihan et al., Radiology 1986;161:401",
))


def _log_linear(model, Y):
    """WLS on log S of normalised signals: (S0 relative, ADC mm²/s) per voxel and whether it solved."""
    X = np.stack([-model.bvals / 1000.0, np.ones(model.bvals.size)], axis=1)  # b in ms/µm²
    beta, ok, _ = solve_loglinear(X, Y, method="wls", n_iter=1)
    with np.errstate(over="ignore", invalid="ignore"):
        P = np.stack([np.exp(beta[:, 1]), beta[:, 0] * 1e-3], axis=1)
    return P, ok & np.all(np.isfinite(P), axis=1)


def _fit_wls(model, Y, C):
    Yn, scale, good = model.normalise(Y, C)
    P, ok = _log_linear(model, Yn)
    status = np.where(ok, STATUS_CONVERGED, STATUS_FAILED).astype(np.int8)
    fitted = ADC_MODEL.evaluate(np.where(ok[:, None], P, 0.0), model.acq)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # non-finite voxels: failed below
        ssr = np.sum((fitted - Yn) ** 2, axis=1)
        sst = np.sum((Yn - Yn.mean(axis=1, keepdims=True)) ** 2, axis=1)
        res = FitResult.closed_form(ADC_MODEL.names, P, status, np.sqrt(ssr / Yn.shape[1]),
                                    np.where(sst > 0, 1.0 - ssr / sst, np.nan))
    model.complete(res, scale, good & ok)
    return res


WLS = Method("wls", "log-linear least squares weighted by the squared predicted signal (default; unbounded: "
             "--bounds need --method lsq)", _fit_wls, reference="Veraart et al., NeuroImage 2013;81:335", bounded=False)


def lsq_start(model, Yn, C):
    """Start of ``lsq``: the weighted log-linear solution (clipped into the bounds), else the initial guess."""
    P, ok = _log_linear(model, Yn)
    return np.where(ok[:, None], np.clip(P, model.lower, model.upper), model.initial[None, :])


LSQ = LeastSquares(description="bounded Levenberg-Marquardt fit of (S0, ADC) to the signal from the wls start",
                   start=lsq_start)


class ADC(DiffusionModel):
    """Mono-exponential ADC bound to a set of b-values.

    Parameters
    ----------
    bvals : array_like, shape (n_b,)
        b-values in s/mm² (at least 2 distinct ones).
    bounds : dict, optional
        ``{name: (lower, upper)}`` overriding the defaults (S0 0.5–2 relative to the mean signal at
        the lowest b-value, ADC 0–0.005 mm²/s).
    initial_guess : dict, optional
        Start used where the log-linear estimate is not finite (default ADC 0.001 mm²/s).
    lm_options : qmri.fitting.LMOptions, optional
        Stopping rules of the ``lsq`` fit.

    Raises
    ------
    QMRIInputError
        Fewer than 2 distinct b-values; b-values not 1-D, non-finite or negative; bad bounds.

    Examples
    --------
    >>> import numpy as np
    >>> from qmri.models import ADC
    >>> model = ADC([0, 100, 400, 800])
    >>> maps = model.fit(model.signal(dict(S0=500.0, ADC=1.2e-3))[None])
    >>> round(float(maps["ADC"][0]) * 1e3, 4)
    1.2
    """

    command = "adc"
    cli = CommandText(
        summary="fit the mono-exponential ADC (S0, ADC) to a diffusion series",
        description=("Fit S = S0 exp(-b ADC) voxel by voxel: log-linear weighted least squares (wls, default) or "
                     "bounded Levenberg-Marquardt (lsq). b in s/mm2, ADC in mm2/s; use --bmin 200 for an ADC "
                     "free of perfusion."))
    methods = table(WLS, LSQ, DNN)
    default_method = "wls"
    spec = ADC_MODEL
    min_distinct_b = 2
    valid_b_max = 1500.0
    valid_b_reason = ("above about 1000-1500 s/mm2 tissue signal is no longer mono-exponential (diffusion kurtosis; "
                      "Jensen et al., MRM 2005;53:1432)")
    demo = DiffusionDemo(parameters=("ADC",), phantom={"snr": 30.0, "block": (16, 16, 4)})
    #: The network shipped for the phantom (``tools/make_pretrained.py``).
    network = DiffusionNetwork(pretrained={"n": 50_000, "snr": "10:60", "ensemble": 3})

    @classmethod
    def phantom_definition(cls):
        """Eleven tissues: the tissue diffusion coefficients D of the OSIPI TF2.4 IVIM test data used as
        ADC, and free water at body temperature; b = 0, 50, 100, 200, 400, 600, 800, 1000 s/mm²."""
        from qmri.simulate import load_definition

        ivim = load_definition("ivim")
        regions = [{"name": r["name"], "ADC": r["D"]} for r in ivim["regions"]]
        regions.append({"name": "free water, 37 C", "ADC": 3.0e-3})
        return {
            "name": "adc", "S0": 1000.0, "bvals": [0, 50, 100, 200, 400, 600, 800, 1000], "block": [8, 8, 2],
            "regions": regions, "units": {"S0": "a.u.", "ADC": "mm2/s"},
            "source": "ADC values: tissue D of the OSIPI TF2.4 IVIM test data (phantoms/ivim.json); free water "
                      "3.0e-3 mm2/s at 37 C (Holz, Heil & Sacco, PCCP 2000;2:4740).",
        }
