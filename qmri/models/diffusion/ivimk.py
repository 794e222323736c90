"""IVIM-kurtosis: the IVIM model with a non-Gaussian (kurtosis) tissue compartment.

Signal (Lu et al., "Extension of the intravoxel incoherent motion model to non-Gaussian diffusion
in head and neck cancer", JMRI 2012;36:1088, doi:10.1002/jmri.23770; Iima & Le Bihan, Radiology
2016;278:13, doi:10.1148/radiol.2015150244)::

    S(b) = S0 · ( f · exp(-b · D*) + (1 - f) · exp(-b · D + b² · D² · K / 6) )

with b in s/mm², D and D* (file label ``Dstar``) in mm²/s, the perfusion fraction f in 0–1 and
the dimensionless kurtosis K. It extends :mod:`qmri.models.diffusion.ivim` (K = 0 is IVIM) to
the b-values up to 1500–2000 s/mm² of prostate and cervix protocols, where the tissue signal is
no longer mono-exponential. The names and default bounds of S0, f, D and D* are IVIM's (OSIPI
TF2.4); K is bounded to 0–3, the range of diffusion kurtosis in tissue (Jensen & Helpern, NMR
Biomed 2010;23:698, doi:10.1002/nbm.1518).

Methods
-------
``lsq`` (default)
    Full bounded Levenberg–Marquardt fit of (S0, f, D, D*, K) with the analytic Jacobian, started
    from the segmented result (one reweighting, D* from the grid). Where D* ends at its upper bound
    on a flat cost, it is lowered as IVIM's (:func:`qmri.models.diffusion.ivim.dstar_plateau`, K and
    D kept).
``segmented``
    IVIM's segmented fit (:func:`qmri.models.diffusion.ivim._segmented_batch`) with the kurtosis
    term: D, K and the intercept from an iteratively weighted log-linear fit over b ≥ threshold
    that is quadratic in b (``log S = c0 - b D + b² D² K / 6``, the trace-DKI form; weights the
    predicted signal², Veraart et al. 2013, doi:10.1016/j.neuroimage.2013.05.028); f = 1 - exp(c0);
    D* by a one-parameter bounded fit with S0, f, D and K fixed.
``dnn``
    The network estimator (:mod:`qmri.fitting.net`).

Signals are normalised per voxel by the mean signal at the lowest b-value before fitting, so the
S0 bounds are relative to that signal; S0 is scaled back in the output.
"""

from __future__ import annotations

import numpy as np

from qmri.fitting.net.method import DNN
from qmri.jit import FASTMATH, njit
from qmri.models.base import Parameter, SignalModel, register
from qmri.models.diffusion.acquisition import DiffusionDemo, DiffusionNetwork
from qmri.models.diffusion.ivim import IVIM, IVIM_MODEL, _fit_segmented, lsq_refine, lsq_start
from qmri.models.facets import CommandText
from qmri.models.methods import LeastSquares, Method, Validation, table


@njit(cache=True)
def ivimk_signal(p, acq, cov, out):
    """IVIM-kurtosis signal; ``p = (S0, f, D, Dstar, K)``, ``acq[:, 0]`` = b (s/mm²)."""
    S0, f, D, Ds, K = p[0], p[1], p[2], p[3], p[4]
    for i in range(acq.shape[0]):
        b = acq[i, 0]
        out[i] = S0 * (f * np.exp(-b * Ds) + (1.0 - f) * np.exp(-b * D + b * b * D * D * K / 6.0))


@njit(cache=True)
def ivimk_jacobian(p, acq, cov, J):
    """Analytic ∂S/∂(S0, f, D, Dstar, K), shape (n_b, 5)."""
    S0, f, D, Ds, K = p[0], p[1], p[2], p[3], p[4]
    for i in range(acq.shape[0]):
        b = acq[i, 0]
        e1 = np.exp(-b * Ds)
        e2 = np.exp(-b * D + b * b * D * D * K / 6.0)
        J[i, 0] = f * e1 + (1.0 - f) * e2
        J[i, 1] = S0 * (e1 - e2)
        J[i, 2] = S0 * (1.0 - f) * e2 * (-b + b * b * D * K / 3.0)
        J[i, 3] = -b * S0 * f * e1
        J[i, 4] = S0 * (1.0 - f) * e2 * b * b * D * D / 6.0


@njit(cache=True, fastmath=FASTMATH)
def ivimk_signal_jacobian(p, acq, cov, out, J):
    """Signal and Jacobian in one pass (each exponential computed once)."""
    S0, f, D, Ds, K = p[0], p[1], p[2], p[3], p[4]
    for i in range(acq.shape[0]):
        b = acq[i, 0]
        e1 = np.exp(-b * Ds)
        e2 = np.exp(-b * D + b * b * D * D * K / 6.0)
        s = f * e1 + (1.0 - f) * e2
        out[i] = S0 * s
        J[i, 0] = s
        J[i, 1] = S0 * (e1 - e2)
        J[i, 2] = S0 * (1.0 - f) * e2 * (-b + b * b * D * K / 3.0)
        J[i, 3] = -b * S0 * f * e1
        J[i, 4] = S0 * (1.0 - f) * e2 * b * b * D * D / 6.0


def ivimk_signal_torch(params, acq, cov=None):
    """IVIM-kurtosis signal in torch: ``params`` (N, 5) as (S0, f, D, Dstar, K), ``acq`` (n_b, 1) → (N, n_b)."""
    import torch

    b = acq[:, 0]
    S0, f, D, Ds, K = (params[:, j : j + 1] for j in range(5))
    return S0 * (f * torch.exp(-b * Ds) + (1.0 - f) * torch.exp(-b * D + b * b * D * D * K / 6.0))


def _example_acquisition():
    return np.array([0, 10, 20, 30, 50, 80, 100, 150, 200, 400, 600, 800, 1000, 1500, 2000], float)[:, None]


IVIMK_MODEL = register(SignalModel(
    name="ivimk",
    parameters=tuple(IVIM_MODEL.parameters) + (  # IVIM's S0, f, D, Dstar (OSIPI bounds), then K
        Parameter("K", "", 0.0, 3.0, 1.0, "diffusion kurtosis of the tissue compartment"),
    ),
    signal=ivimk_signal,
    jacobian=ivimk_jacobian,
    signal_jacobian=ivimk_signal_jacobian,
    torch_signal=ivimk_signal_torch,
    acquisition_doc="acq[:, 0]: b-values in s/mm2",
    example_acquisition=_example_acquisition,
    reference="Lu et al., JMRI 2012;36:1088 (doi:10.1002/jmri.23770); Iima & Le Bihan, Radiology 2016;278:13; "
              "IVIM bounds OSIPI TF2.4, K 0-3 Jensen & Helpern, NMR Biomed 2010;23:698",
))


LSQ = LeastSquares(description="full bounded Levenberg-Marquardt fit of (S0, f, D, Dstar, K) from a segmented start; "
                               "where Dstar ends on its upper bound on a flat cost, the smallest Dstar as good within "
                               "0.1 residual variance, as IVIM (default)", start=lsq_start, refine=lsq_refine)
SEGMENTED = Method("segmented", "D and K from a reweighted log-linear fit quadratic in b over b >= threshold, f "
                   "from its intercept, Dstar by a one-parameter bounded fit", _fit_segmented,
                   reference="Sigmund et al. IVIM consensus recommendations (segmentation); Lu et al., JMRI "
                             "2012;36:1088 (kurtosis term)",
                   validation=Validation(recovery=0.05, note=(
                       "biased without noise: the perfusion signal left at b >= threshold enters the D and K fit "
                       "(NRMSE of Dstar 0.035, f 0.027 on the noise-free phantom)")))


class IVIMKurtosis(IVIM):
    """IVIM with a kurtosis term in the tissue compartment, bound to a set of b-values.

    Parameters
    ----------
    bvals : array_like, shape (n_b,)
        b-values in s/mm² (at least 5 distinct ones, 3 of them at or above ``threshold``; a range
        up to 1500–2000 s/mm² identifies K).
    bounds : dict, optional
        ``{name: (lower, upper)}`` overriding the defaults (S0 0.5–2 relative to the mean signal
        at the lowest b, f 0–1, D 0–0.005 mm²/s, Dstar 0.005–0.2 mm²/s as IVIM (OSIPI TF2.4); K 0–3,
        Jensen & Helpern 2010).
    initial_guess : dict, optional
        ``{name: value}`` used where the segmented start fails (f 0.1, D 0.001, Dstar 0.01, K 1).
    threshold : float
        b-value (s/mm²) at and above which perfusion is taken as negligible (segmented fit and the
        ``lsq`` start); default 200 (OSIPI, consensus).
    preset : str, optional
        Organ preset of the IVIM initial guess (:data:`qmri.models.diffusion.ivim.PRESETS`).
    b0_threshold : float
        b-values (s/mm²) at or below it are fitted as b = 0 (default 0, as IVIM).
    lm_options : qmri.fitting.LMOptions, optional
        Stopping rules of the ``lsq`` fit.

    Raises
    ------
    QMRIInputError
        Fewer than 5 distinct b-values; b-values not 1-D, non-finite or negative; unknown preset;
        bad bounds.

    Examples
    --------
    >>> import numpy as np
    >>> from qmri.models import IVIMKurtosis
    >>> b = np.array([0, 10, 20, 50, 100, 200, 400, 800, 1200, 1600, 2000.])
    >>> model = IVIMKurtosis(b)
    >>> sig = model.signal(dict(S0=1000, f=0.1, D=1e-3, Dstar=0.02, K=0.9))
    >>> maps = model.fit(sig[None, :], method="lsq")
    >>> round(float(maps["K"][0]), 3)
    0.9
    """

    command = "ivimk"
    cli = CommandText(
        summary="fit IVIM-kurtosis (S0, f, D, Dstar, K) to a diffusion series",
        description=("Fit S = S0 (f exp(-b Dstar) + (1 - f) exp(-b D + b^2 D^2 K / 6)) voxel by voxel (IVIM with a "
                     "kurtosis term, Lu et al. 2012), for b up to 2000 s/mm2. D and Dstar in mm2/s, b in s/mm2, f a "
                     "fraction, K dimensionless."))
    methods = table(LSQ, SEGMENTED, DNN)
    default_method = "lsq"
    spec = IVIMK_MODEL
    kurtosis_pair = ("D", "K")
    min_distinct_b = 5  # five parameters
    valid_b_max = 3000.0
    valid_b_reason = ("the kurtosis (second-order cumulant) expansion holds up to about b = 2000-3000 s/mm2, the "
                      "b-range of DKI; beyond it the fitted signal turns upward (Jensen & Helpern, NMR Biomed "
                      "2010;23:698)")
    needs_b_max = 1500.0
    needs_b_reason = ("K is told apart from D only by the curvature of the tissue signal, which needs b-values up to "
                      "about 1500-2000 s/mm2 (Jensen & Helpern, NMR Biomed 2010;23:698; Lu et al., JMRI 2012;36:1088 "
                      "up to 2000); below, fit qmri ivim")
    demo = DiffusionDemo(parameters=("f", "D", "Dstar", "K"), phantom={"block": (16, 16, 4)})
    #: The network shipped for the phantom (``tools/make_pretrained.py``).
    network = DiffusionNetwork(pretrained={"n": 100_000, "snr": "10:60", "ensemble": 3})

    @classmethod
    def phantom_definition(cls):
        """Five prostate and cervix tissues (D 0.8–1.5e-3 mm²/s, K 0.55–1.1, f 0.07–0.15, D* 15–40e-3
        mm²/s), 15 b-values 0–2000 s/mm²."""
        return {
            "name": "ivimk", "S0": 1000.0, "snr": 50.0,
            "bvals": [0, 10, 20, 30, 50, 80, 100, 150, 200, 400, 600, 800, 1000, 1500, 2000],
            "block": [8, 8, 2],
            "regions": [
                {"name": "prostate peripheral zone", "f": 0.12, "D": 1.5e-3, "Dstar": 0.025, "K": 0.55},
                {"name": "prostate transition zone", "f": 0.10, "D": 1.2e-3, "Dstar": 0.020, "K": 0.75},
                {"name": "prostate cancer", "f": 0.07, "D": 0.8e-3, "Dstar": 0.015, "K": 1.1},
                {"name": "cervical stroma", "f": 0.15, "D": 1.4e-3, "Dstar": 0.040, "K": 0.6},
                {"name": "cervical cancer", "f": 0.08, "D": 0.9e-3, "Dstar": 0.030, "K": 1.0},
            ],
            "units": {"S0": "a.u.", "f": "", "D": "mm2/s", "Dstar": "mm2/s", "K": ""},
            "source": "Illustrative values chosen for this phantom (not taken from one study), within the ranges "
                      "reported for prostate and cervix with IVIM-kurtosis (D 0.8-1.5e-3 mm2/s, K 0.5-1.2, f "
                      "0.05-0.2, D* 10-50e-3 mm2/s; review: Iima & Le Bihan, Radiology 2016;278:13); model of Lu "
                      "et al., JMRI 2012;36:1088.",
        }
