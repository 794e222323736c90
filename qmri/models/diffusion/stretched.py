"""The stretched-exponential diffusion model: a continuous distribution of diffusion rates.

Signal (Bennett et al., MRM 2003;50:727, doi:10.1002/mrm.10581)::

    S(b) = S0 · exp(-(b · DDC)^alpha)

with b in s/mm², the distributed diffusion coefficient DDC in mm²/s and the heterogeneity index
alpha in (0, 1] (1: mono-exponential; lower: a wider distribution of diffusion rates within the
voxel).

Method ``lsq``: bounded Levenberg–Marquardt fit of (S0, DDC, alpha) with analytic Jacobians,
started from a log-linear mono-exponential fit (DDC = ADC, alpha = 1 clipped into the bounds).
"""

from __future__ import annotations

import numpy as np

from qmri.fitting.linear import solve_loglinear
from qmri.jit import njit
from qmri.models.base import Parameter, SignalModel, register
from qmri.models.diffusion.acquisition import DiffusionDemo, DiffusionModel, DiffusionNetwork
from qmri.models.facets import CommandText
from qmri.fitting.net.method import DNN
from qmri.models.methods import LeastSquares, table


@njit(cache=True)
def stretched_signal(p, acq, cov, out):
    """``S0 exp(-(b DDC)^alpha)``; ``p = (S0, DDC, alpha)``, ``acq[:, 0]`` = b (s/mm²)."""
    for i in range(acq.shape[0]):
        u = acq[i, 0] * p[1]
        out[i] = p[0] * np.exp(-(u ** p[2])) if u > 0.0 else p[0]


@njit(cache=True)
def stretched_jacobian(p, acq, cov, J):
    """Analytic ∂S/∂(S0, DDC, alpha), shape (n_b, 3); at b = 0 only ∂S/∂S0 = 1 is non-zero."""
    S0, ddc, a = p[0], p[1], p[2]
    for i in range(acq.shape[0]):
        u = acq[i, 0] * ddc
        if u > 0.0:
            ua = u ** a
            e = np.exp(-ua)
            J[i, 0] = e
            J[i, 1] = -S0 * e * a * ua / ddc
            J[i, 2] = -S0 * e * ua * np.log(u)
        else:
            J[i, 0] = 1.0
            J[i, 1] = 0.0
            J[i, 2] = 0.0


@njit(cache=True)
def stretched_signal_jacobian(p, acq, cov, out, J):
    """Signal and Jacobian in one pass (one power and one exponential per b-value)."""
    S0, ddc, a = p[0], p[1], p[2]
    for i in range(acq.shape[0]):
        u = acq[i, 0] * ddc
        if u > 0.0:
            ua = u ** a
            e = np.exp(-ua)
            out[i] = S0 * e
            J[i, 0] = e
            J[i, 1] = -S0 * e * a * ua / ddc
            J[i, 2] = -S0 * e * ua * np.log(u)
        else:
            out[i] = S0
            J[i, 0] = 1.0
            J[i, 1] = 0.0
            J[i, 2] = 0.0


def stretched_signal_torch(params, acq, cov=None):
    """Stretched exponential in torch: ``params`` (N, 3) as (S0, DDC, alpha), ``acq`` (n_b, 1) → (N, n_b)."""
    import torch

    u = acq[:, 0] * params[:, 1:2]
    pos = u > 0
    # the floor keeps the gradient finite at b = 0 in float32 as well (1e-300 underflows there)
    ua = torch.where(pos, torch.clamp(u, min=torch.finfo(u.dtype).tiny) ** params[:, 2:3], torch.zeros_like(u))
    return params[:, 0:1] * torch.exp(-ua)


STRETCHED_MODEL = register(SignalModel(
    name="stretched",
    parameters=(
        Parameter("S0", "a.u.", 0.5, 2.0, 1.0,
                  "signal at b=0; bounds relative to the mean signal at the lowest b-value"),
        Parameter("DDC", "mm2/s", 1e-6, 0.005, 0.001, "distributed diffusion coefficient"),
        Parameter("alpha", "", 0.1, 1.0, 0.8, "heterogeneity index (1: mono-exponential)"),
    ),
    signal=stretched_signal,
    jacobian=stretched_jacobian,
    signal_jacobian=stretched_signal_jacobian,
    torch_signal=stretched_signal_torch,
    acquisition_doc="acq[:, 0]: b-values in s/mm2",
    example_acquisition=lambda: np.array([0, 50, 100, 200, 400, 800, 1200, 1600, 2000.0])[:, None],
    reference="Bennett et al., MRM 2003;50:727 (doi:10.1002/mrm.10581)",
))


def lsq_start(model, Yn, C):
    """Start of ``lsq``: S0 and DDC of a log-linear fit with alpha = 1, else the initial guess."""
    X = np.stack([-model.bvals / 1000.0, np.ones(model.bvals.size)], axis=1)  # b in ms/µm²
    beta, ok, _ = solve_loglinear(X, Yn, method="wls", n_iter=1)
    with np.errstate(over="ignore", invalid="ignore"):
        p0 = np.stack([np.exp(beta[:, 1]), beta[:, 0] * 1e-3, np.ones(Yn.shape[0])], axis=1)
    p0 = np.where(ok[:, None] & np.isfinite(p0), p0, model.initial[None, :])
    return np.clip(p0, model.lower, model.upper)


class StretchedExponential(DiffusionModel):
    """Stretched-exponential diffusion model bound to a set of b-values.

    Parameters
    ----------
    bvals : array_like, shape (n_b,)
        b-values in s/mm² (at least 3 distinct ones; a range up to ~2000 s/mm² identifies alpha).
    bounds : dict, optional
        ``{name: (lower, upper)}`` overriding the defaults (S0 0.5–2 relative to the mean signal at
        the lowest b-value, DDC 1e-6–0.005 mm²/s, alpha 0.1–1).
    initial_guess : dict, optional
        Start used where the log-linear estimate is not finite (default DDC 0.001 mm²/s, alpha 0.8).
    lm_options : qmri.fitting.LMOptions, optional

    Raises
    ------
    QMRIInputError
        Fewer than 3 distinct b-values; b-values not 1-D, non-finite or negative; bad bounds.

    Examples
    --------
    >>> import numpy as np
    >>> from qmri.models import StretchedExponential
    >>> model = StretchedExponential([0, 200, 500, 1000, 1500, 2000])
    >>> maps = model.fit(model.signal(dict(S0=800.0, DDC=1.1e-3, alpha=0.75))[None])
    >>> round(float(maps["alpha"][0]), 4)
    0.75
    """

    command = "stretched"
    cli = CommandText(
        summary="fit the stretched exponential (S0, DDC, alpha) to a diffusion series",
        description=("Fit S = S0 exp(-(b DDC)^alpha) voxel by voxel (Bennett et al. 2003) by bounded "
                     "Levenberg-Marquardt. b in s/mm2, DDC in mm2/s, alpha in (0, 1]."))
    methods = table(LeastSquares(description="bounded Levenberg-Marquardt fit of (S0, DDC, alpha) from a "
                                             "mono-exponential start", start=lsq_start), DNN)
    default_method = "lsq"
    spec = STRETCHED_MODEL
    min_distinct_b = 3
    demo = DiffusionDemo(parameters=("DDC", "alpha"), phantom={"snr": 50.0, "block": (16, 16, 4)})
    #: The network shipped for the phantom (``tools/make_pretrained.py``).
    network = DiffusionNetwork(pretrained={"n": 50_000, "snr": "10:60", "ensemble": 3})

    @classmethod
    def phantom_definition(cls):
        """Five illustrative tissues (DDC 0.6–2.5e-3 mm²/s, alpha 0.55–0.95) with b up to 2000 s/mm²."""
        return {
            "name": "stretched", "S0": 1000.0, "bvals": [0, 50, 100, 200, 400, 600, 800, 1000, 1500, 2000],
            "block": [8, 8, 2],
            "regions": [
                {"name": "hypercellular tumour", "DDC": 0.6e-3, "alpha": 0.7},
                {"name": "tumour", "DDC": 0.9e-3, "alpha": 0.75},
                {"name": "benign stroma", "DDC": 1.4e-3, "alpha": 0.85},
                {"name": "oedema", "DDC": 2.0e-3, "alpha": 0.9},
                {"name": "necrosis / fluid", "DDC": 2.5e-3, "alpha": 0.95},
            ],
            "units": {"S0": "a.u.", "DDC": "mm2/s", "alpha": ""},
            "source": "Illustrative values chosen for this phantom (not taken from a study): DDC from "
                      "hypercellular tissue to fluid, alpha 0.7-0.95; model of Bennett et al., MRM 2003;50:727.",
        }
