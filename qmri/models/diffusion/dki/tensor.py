"""Full-tensor diffusion kurtosis imaging: the :class:`DKI` model and its methods.

Signal and coefficients: :mod:`qmri.models.diffusion.dki.design`; scalar maps:
:mod:`qmri.models.diffusion.dki.metrics`; the constrained fit:
:mod:`qmri.models.diffusion.dki.constrained`. The acquisition needs at least 3 distinct b-values
(b=0 included) and 15 non-collinear directions (Jensen & Helpern, NMR Biomed 2010;23:698).

The signal model declared here (``dki_tensor``) is the nonlinear form used by the ``lsq`` method:
``S = S0 exp(x · β[:21])`` with the 21 tensor coefficients of the design matrix (b in ms/µm²).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from qmri.errors import QMRIInputError
from qmri.fitting.linear import MIN_SIGNAL, solve_loglinear
from qmri.fitting.lm import LMOptions, fit_lm
from qmri.fitting.net.method import DNN
from qmri.fitting.result import STATUS_CONVERGED, STATUS_FAILED, FitResult
from qmri.jit import njit
from qmri.models.base import Parameter, SignalModel, register
from qmri.models.diffusion.acquisition import (
    B0_THRESHOLD,
    DiffusionModel,
    DiffusionNetwork,
    b0_threshold_option,
    check_b0_threshold,
    check_bvals,
    check_bvecs,
    check_rotation,
    describe_shells,
    n_directions,
    normalise_to_lowest_b,
    powder_average,
    shells,
)
from qmri.models.diffusion.dki.constrained import constrained_fit
from qmri.models.diffusion.dki.design import (
    DT_NAMES,
    KT_NAMES,
    KURTOSIS_MONOTONIC_C,
    N_CONSTRAINT_DIRECTIONS,
    design_matrix,
    dki_signal,
    hemisphere,
)
from qmri.models.diffusion.dki.metrics import MAP_UNITS, MAX_KURTOSIS, MIN_KURTOSIS, tensor_maps
from qmri.models.diffusion.dki.tensors import SIGNAL_UNITS, TENSOR_UNITS, predicted_signal, tensor_outputs
from qmri.models.facets import CommandText, Demo
from qmri.models.methods import Method, table
from qmri.options import Option


# ---------------------------------------------------------------------------------------------
# Full-tensor nonlinear model (declared: used by the ``lsq`` method)
# ---------------------------------------------------------------------------------------------
@njit(cache=True)
def dki_tensor_signal(p, acq, cov, out):
    """``S0 exp(acq · p[1:])``; ``acq`` = the first 21 design-matrix columns (ms/µm²)."""
    for i in range(acq.shape[0]):
        s = 0.0
        for a in range(acq.shape[1]):
            s += acq[i, a] * p[1 + a]
        out[i] = p[0] * np.exp(s)


@njit(cache=True)
def dki_tensor_jacobian(p, acq, cov, J):
    for i in range(acq.shape[0]):
        s = 0.0
        for a in range(acq.shape[1]):
            s += acq[i, a] * p[1 + a]
        e = np.exp(s)
        J[i, 0] = e
        for a in range(acq.shape[1]):
            J[i, 1 + a] = p[0] * e * acq[i, a]


@njit(cache=True)
def dki_tensor_signal_jacobian(p, acq, cov, out, J):
    """Signal and Jacobian in one pass (one exponential per measurement)."""
    for i in range(acq.shape[0]):
        s = 0.0
        for a in range(acq.shape[1]):
            s += acq[i, a] * p[1 + a]
        e = np.exp(s)
        out[i] = p[0] * e
        J[i, 0] = e
        for a in range(acq.shape[1]):
            J[i, 1 + a] = p[0] * e * acq[i, a]


def dki_tensor_signal_torch(params, acq, cov=None):
    """Full-tensor DKI signal in torch: ``params`` (N, 22), ``acq`` (n, 21) → (N, n)."""
    import torch

    return params[:, :1] * torch.exp(params[:, 1:] @ acq.T)


def _example_tensor_acquisition():
    g = hemisphere(20)
    b = np.r_[0.0, np.full(20, 1000.0), np.full(20, 2000.0)]
    return design_matrix(b, np.r_[[[1.0, 0, 0]], g, g])[:, :21]


DKI_TENSOR_MODEL = register(SignalModel(
    name="dki_tensor",
    parameters=(Parameter("S0", "a.u.", 0.0, np.inf, 1.0, "signal at b=0"),)
    + tuple(Parameter(f"D{k}", "um2/ms", -np.inf, np.inf, 1.0 if k[0] == k[1] else 0.0,
                      f"diffusion tensor element D_{k}") for k in DT_NAMES)
    + tuple(Parameter(f"MD2W{k}", "um4/ms2", -np.inf, np.inf, 0.0,
                      f"MD^2 times kurtosis tensor element W_{k}") for k in KT_NAMES),
    signal=dki_tensor_signal,
    jacobian=dki_tensor_jacobian,
    signal_jacobian=dki_tensor_signal_jacobian,
    torch_signal=dki_tensor_signal_torch,
    acquisition_doc="acq: the first 21 columns of qmri.models.diffusion.dki.design.design_matrix (b in ms/um2)",
    example_acquisition=_example_tensor_acquisition,
    reference="Jensen et al., MRM 2005;53:1432 (doi:10.1002/mrm.20508); Jensen & Helpern, NMR Biomed 2010;23:698",
))


# ---------------------------------------------------------------------------------------------
# Methods: each gives the 22 coefficients; the scalar maps follow for all of them
# ---------------------------------------------------------------------------------------------
#: ``--tensors``: the tensor images (:mod:`qmri.models.diffusion.dki.tensors`).
TENSORS_OPTION = Option("tensors", "also write the diffusion and kurtosis tensors (DT: 6 volumes, KT: 15, MRtrix3 "
                        "dwi2tensor/-dkt order, world frame), eigenvalues, V1 and colour_FA", bool, False)
#: ``--predicted``: predicted signal and residual.
PREDICTED_OPTION = Option("predicted", "also write the predicted signal and the residual (data - predicted), one "
                          "volume per measurement", bool, False)


class TensorMethod(Method):
    """A full-tensor DKI method: ``solve(model, Y) -> (beta (n, 22), status (n,), n_iter (n,))``
    gives the coefficients, from which every method computes the same scalar maps (and, on
    request, the tensor images and the predicted signal: :mod:`qmri.models.diffusion.dki.tensors`)."""

    gives_parameters = False  # the maps are derived from the coefficients: no --crlb

    def __init__(self, name, description, solve, reference=""):
        super().__init__(name, description, options=(TENSORS_OPTION, PREDICTED_OPTION), reference=reference,
                         bounded=False)  # the 22 coefficients are unbounded (cwls: constraints of its own)
        self.solve = solve

    def fit(self, model, Y, C, tensors: bool = False, predicted: bool = False):
        beta, status, n_iter = self.solve(model, Y)
        maps = tensor_maps(beta, X=model.X, signals=Y, min_diffusivity=model.min_diffusivity,
                           min_kurtosis=model.min_kurtosis, max_kurtosis=model.max_kurtosis)
        bad = ~np.isfinite(maps["MD"])
        status = np.where(bad, STATUS_FAILED, status).astype(np.int8)
        rmse, r2 = maps.pop("rmse"), maps.pop("r2")
        vectors = {}
        if tensors:
            vectors.update(tensor_outputs(beta, model.bvec_frame))
        if predicted:
            vectors.update(predicted_signal(beta, model.X, Y))
        return FitResult(params=maps, status=status, n_iter=n_iter, rmse=rmse, r2=r2, vectors=vectors)

    def vector_units(self, model, options: dict) -> dict[str, str]:
        return {**(TENSOR_UNITS if options.get("tensors") else {}), **(SIGNAL_UNITS if options.get("predicted") else {})}

    def prepare(self, model, rows, index, covariates, *, progress: bool = False, **options):
        """Record the layout and frame of the tensor images when they are asked for (``tensors``)."""
        if not options.get("tensors"):
            return {}, {}
        return {}, {"tensor_layout": {
            "DT": "D11, D22, D33, D12, D13, D23 (mm2/s; MRtrix3 dwi2tensor order)",
            "KT": "W1111, W2222, W3333, W1112, W1113, W1222, W1333, W2223, W2333, W1122, W1133, W2233, W1123, "
                  "W1223, W1233 (dimensionless W = MD^2 W / MD^2; MRtrix3 -dkt order)",
            "frame": "world (scanner) coordinates, as MRtrix3" if model.bvec_frame is not None
                     else "the b-vectors' frame",
            "eigenvalues": "L1 >= L2 >= L3 (mm2/s)",
            "V1": "unit principal eigenvector, b-vector frame (as FSL dtifit)",
            "colour_FA": "FA * |V1| (R, G, B), b-vector frame"}}


def _linear_status(ok, rounds):
    return np.where(ok, STATUS_CONVERGED, STATUS_FAILED).astype(np.int8), rounds.astype(np.int32)


def _scale_free(solve):
    """``solve`` (a log-linear fit ``(model, Y) -> (beta, ok, rounds)``) on the signals divided by each
    voxel's mean signal at the lowest b-value (:func:`~qmri.models.diffusion.acquisition.
    normalise_to_lowest_b`), with log S0 shifted back: the coefficients are the same at any scale of
    the data (the floor ``min_signal`` is relative to that signal), and a voxel whose lowest-b signal
    is not finite and positive fails."""

    def run(model, Y):
        Yn, scale, good = normalise_to_lowest_b(Y, model.bvals)
        Yn[~good] = 1.0
        beta, ok, rounds = solve(model, Yn)
        beta[:, 21] += np.log(scale)
        ok = ok & good
        beta[~ok] = np.nan
        return beta, ok, rounds

    return run


@_scale_free
def _wls(model, Y):
    return solve_loglinear(model.X, Y, method="wls", n_iter=model.wls_iter, min_signal=model.min_signal)


@_scale_free
def _ols(model, Y):
    return solve_loglinear(model.X, Y, method="ols", min_signal=model.min_signal)


@_scale_free
def _cwls(model, Y):
    return constrained_fit(model.X, Y, model.b_max, min_signal=model.min_signal)


def _solve_wls(model, Y):
    beta, ok, rounds = _wls(model, Y)
    return (beta, *_linear_status(ok, rounds))


def _solve_ols(model, Y):
    beta, ok, rounds = _ols(model, Y)
    return (beta, *_linear_status(ok, rounds))


def _solve_cwls(model, Y):
    beta, ok, rounds = _cwls(model, Y)
    return (beta, *_linear_status(ok, rounds))


def _solve_nls(model, Y):
    beta, status, _ = _solve_wls(model, Y)
    ok = status == STATUS_CONVERGED
    start = np.where(ok[:, None], beta, 0.0)
    scale = np.exp(np.clip(start[:, 21], -700, 700))
    scale = np.where(ok & np.isfinite(scale) & (scale > 0), scale, 1.0)
    Yn = Y / scale[:, None]
    p0 = np.concatenate([np.ones((Y.shape[0], 1)), start[:, :21]], axis=1)
    res = fit_lm(DKI_TENSOR_MODEL, model.X[:, :21], Yn, p0, options=model.lm_options)
    P = np.stack([res.params[k] for k in DKI_TENSOR_MODEL.names], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.concatenate([P[:, 1:], np.log(P[:, :1] * scale[:, None])], axis=1)
    status = np.where(ok, res.status, STATUS_FAILED).astype(np.int8)
    beta[status == STATUS_FAILED] = np.nan
    return beta, status, res.n_iter


WLS = TensorMethod("wls", "weighted linear least squares on log S, weights from the OLS prediction "
                   "(dipy's WLS; default)", _solve_wls, reference="Veraart et al., NeuroImage 2013;81:335")
OLS = TensorMethod("ols", "ordinary linear least squares on log S", _solve_ols)
LSQ = TensorMethod("lsq", "bounded Levenberg-Marquardt on the signal (S0 >= 0) from the WLS solution (formerly 'nls')",
                   _solve_nls)
CWLS = TensorMethod("cwls", "WLS with D(n) >= 0 and 0 <= K(n) <= 3/(b_max D(n)) on the whole sphere",
                    _solve_cwls, reference="Tabesh et al., MRM 2011;65:823 (constrained linear least squares)")


@dataclass(frozen=True)
class DKINetwork(DiffusionNetwork):
    """The network facet of full-tensor DKI (:class:`qmri.models.diffusion.acquisition.DiffusionNetwork`):
    finite ranges of the 22 tensor coefficients, training tensors from compartment mixtures, networks
    bound to the b-values and gradient directions, and the shipped networks of both the full tensor
    and trace DKI.

    Attributes
    ----------
    pretrained_trace : mapping or None
        Training keywords of the trace DKI network shipped for the DKI phantom (``dki-trace``); the
        inherited ``pretrained`` is the full tensor's (``dki``).
    """

    pretrained_trace: Mapping | None = None

    def bounds(self):
        """Finite ranges of the 22 declared coefficients for a network, ``(lower, upper)`` each (22,):
        S0 0.5–2 (relative to the mean b=0 signal), diagonal D 0–3.5 µm²/ms (above free water at
        37 °C), off-diagonal D ±1.75, MD²·W: W_iiii −0.5–3, W_iijj −0.5–1.5, the others ±1
        (µm⁴/ms²), which hold the tissue mixtures of ``phantoms/dki.json`` and the prior of
        :meth:`sample`."""
        d_lo, d_hi = np.array([0, -1.75, 0, -1.75, -1.75, 0.0]), np.array([3.5, 1.75, 3.5, 1.75, 1.75, 3.5])
        w_lo = np.array([-0.5] * 3 + [-1.0] * 6 + [-0.5] * 3 + [-1.0] * 3)
        w_hi = np.array([3.0] * 3 + [1.0] * 6 + [1.5] * 3 + [1.0] * 3)
        return np.r_[0.5, d_lo, w_lo], np.r_[2.0, d_hi, w_hi]

    def sample(self, n, rng, prior=None):
        """``n`` coefficient vectors (n, 22) of random two-compartment Gaussian mixtures (as the
        phantom's tissues): each compartment axially symmetric with a random direction, axial
        diffusivity 0.2–3 µm²/ms, radial 5–100% of it, fraction 0–1; S0 uniform 0.5–2; mixtures
        outside :meth:`bounds` are drawn again. ``prior`` is not supported (the 22 coefficients are
        not independent).

        Raises
        ------
        QMRIInputError
            A ``prior`` was given.
        """
        from qmri.models.diffusion.dki.design import tensors_from_compartments

        if prior:
            raise QMRIInputError("full-tensor DKI draws its training tensors from compartment mixtures; a prior "
                                 "over the coefficients is not supported")
        lo, hi = self.bounds()
        out = np.empty((0, 22))
        while out.shape[0] < n:
            k = n - out.shape[0]
            P = np.empty((k, 22))
            P[:, 0] = rng.uniform(lo[0], hi[0], k)
            for i in range(k):
                ax = rng.uniform(0.2e-3, 3e-3, 2)
                evals = np.stack([ax, ax * rng.uniform(0.05, 1.0, 2), np.zeros(2)], axis=1)
                evals[:, 2] = evals[:, 1]
                f = rng.uniform()
                dt, kt = tensors_from_compartments([f, 1 - f], evals, rng.normal(size=(2, 3)))
                md = (dt[0] + dt[2] + dt[5]) / 3.0 * 1e3
                P[i, 1:] = np.r_[dt * 1e3, kt * md * md]
            out = np.concatenate([out, P[np.all((P >= lo) & (P <= hi), axis=1)]])
        return out[:n]

    def protocol(self):
        """The b-values (s/mm²) and the design's gradient directions (ms/µm²) a network is bound to."""
        return {"b-values (s/mm2)": self.model.bvals, "gradient directions (DKI design, ms/um2)": self.model.acq}

    def recipes(self) -> dict:
        """``dki-trace`` and ``dki``: the trace and the full-tensor model on the phantom's acquisition."""
        cls = self.owner

        def make(trace):
            ph = cls.phantom(snr=np.inf, block=(1, 1, 1))
            return cls.from_acquisition(ph.acquisition["bvals"], ph.acquisition["bvecs"], trace=trace)

        return {"dki-trace": (lambda: make(True), dict(self.pretrained_trace)),
                "dki": (lambda: make(False), dict(self.pretrained))}


class DKIDemo(Demo):
    """The DKI demo: a further column, the voxels whose fitted tensors give a negative apparent kurtosis."""

    def extra(self, model, ph, maps, method, mask):
        """Percentage of voxels with a negative apparent kurtosis along one of 100 directions (tensor
        methods: those that give the coefficients)."""
        from qmri.models.diffusion.dki.design import apparent_kurtosis

        if not isinstance(self.owner.methods[method], TensorMethod):
            return {}
        beta = model.coefficients(ph.data[mask], method)[0]
        return {"K<0 %": float(np.mean(np.nanmin(apparent_kurtosis(beta, hemisphere(100)), axis=1) < 0)) * 100}


class DKI(DiffusionModel):
    """Full-tensor diffusion kurtosis model bound to an acquisition.

    Parameters
    ----------
    bvals : array_like, shape (n,)
        b-values in s/mm², as measured: the design matrix uses every volume's b-value and
        direction (low b-values included, as dipy); b <= 50 only counts as b=0 when directions
        and shells are counted.
    bvecs : array_like, shape (n, 3)
        Gradient directions, unit length (±1%) for b > 50 (normalised internally); a b <= 50
        volume without a unit vector is taken as b=0.
    min_kurtosis, max_kurtosis : float
        Clipping of the MK, AK, RK, MKT maps (default -3/7 and 10, dipy's defaults).
    min_signal : float
        Floor applied before the log to the signal divided by the voxel's mean signal at the lowest
        b-value (default 1e-4, dipy's value, relative here so that the fit does not depend on the
        scale of the data).
    wls_iter : int
        Reweightings of the ``wls`` fit (default 1 = dipy's WLS: weights from the OLS prediction).
    b0_threshold : float
        b (s/mm²) at or below which a volume counts as b = 0 when shells and directions are counted
        and b-vectors checked (default :data:`~qmri.models.diffusion.acquisition.B0_THRESHOLD` = 50,
        dipy's); the design matrix uses every volume's measured b-value.
    lm_options : qmri.fitting.LMOptions, optional
        Stopping rules of the ``lsq`` fit.
    bvec_frame : array_like, shape (3, 3), optional
        Rotation from the b-vectors' frame to world (scanner) coordinates, into which the tensor
        images (``tensors=True``) are turned (:func:`~qmri.models.diffusion.acquisition.fsl_bvec_frame`
        of the series' affine for FSL b-vectors; the file workflow gives it); default None: the
        tensors stay in the b-vectors' frame.

    Methods
    -------
    ``wls`` (default), ``ols``: linear least squares on log S (:mod:`qmri.fitting.linear`).
    ``lsq``: bounded Levenberg–Marquardt on S (S0 >= 0) from the WLS solution.
    ``cwls``: WLS subject to D(n) >= 0, K(n) >= 0 and K(n) <= 3 / (b_max D(n)) on
    :data:`~qmri.models.diffusion.dki.design.N_CONSTRAINT_DIRECTIONS` directions plus each voxel's
    worst directions (Tabesh et al. 2011 CLLS constraints; the upper bound keeps the signal
    monotonically decreasing up to the largest b-value), solved exactly per voxel
    (:func:`qmri.models.diffusion.dki.constrained.constrained_fit`).

    Outputs: ``S0`` (a.u.), ``MD``, ``AD``, ``RD`` (mm²/s), ``FA``, ``MK``, ``AK``, ``RK``, ``MKT``,
    ``KFA`` (:mod:`qmri.models.diffusion.dki.metrics`).

    Raises
    ------
    QMRIInputError
        Fewer than 3 distinct b-values (b=0 included) or 15 directions, b-vectors not unit
        length, rank-deficient design.
    """

    command = "dki"
    cli = CommandText(
        summary="fit diffusion kurtosis (full tensor, or trace/powder DKI for body imaging)",
        description=("Fit DKI voxel by voxel. Full tensor (S0, MD, AD, RD, FA, MK, AK, RK, MKT, KFA) when a "
                     ".bvec with >= 15 directions is given and --trace is not set; otherwise trace DKI "
                     "S = S0 exp(-b D + b^2 D^2 K/6) on direction-averaged images (S0, D, K), fitted by "
                     "bounded LM. b in s/mm2, diffusivities in mm2/s, kurtosis unitless."))
    options = (Option("trace", "trace/powder DKI: average the volumes of each b-shell (b rounded to 50 s/mm2) "
                      "when a .bvec is given, else fit each volume as one b-value", bool, False),
               b0_threshold_option(f"not counted as a direction or shell, b-vector not checked (default "
                                   f"{B0_THRESHOLD:g}, as dipy)"))
    methods = table(WLS, OLS, LSQ, CWLS, DNN)
    default_method = "wls"
    method_aliases = {"nls": "lsq"}  # its name before every least-squares fit was called lsq
    spec = DKI_TENSOR_MODEL
    uses_bvecs = True
    valid_b_max = 3000.0
    valid_b_reason = ("the kurtosis expansion holds up to about 2000-3000 s/mm2 in tissue (Jensen & Helpern, NMR "
                      "Biomed 2010;23:698)")

    def __init__(self, bvals, bvecs, *, min_kurtosis=MIN_KURTOSIS, max_kurtosis=MAX_KURTOSIS,
                 min_signal=MIN_SIGNAL, wls_iter: int = 1, b0_threshold: float = B0_THRESHOLD,
                 lm_options: LMOptions | None = None, bvec_frame=None):
        self.b0_threshold = check_b0_threshold(b0_threshold)
        self.bvec_frame = None if bvec_frame is None else check_rotation(bvec_frame, "bvec_frame")
        b = check_bvals(bvals)
        g = check_bvecs(b, bvecs, b0_threshold=self.b0_threshold)
        n_shells = np.unique(shells(b, self.b0_threshold)).size
        if n_shells < 3:
            raise QMRIInputError(f"full-tensor DKI needs at least 3 distinct b-values (b=0 included), got "
                                 f"{n_shells}: {sorted(set(shells(b, self.b0_threshold).tolist()))}")
        n_dirs = n_directions(b, g, self.b0_threshold)
        if n_dirs < 15:
            raise QMRIInputError(f"full-tensor DKI needs at least 15 distinct gradient directions, got {n_dirs}")
        self.bvals, self.bvecs = b, g
        self.X = design_matrix(b, g)
        if np.linalg.matrix_rank(self.X) < 22:
            raise QMRIInputError("the acquisition does not determine the 22 DKI coefficients (rank-deficient "
                                 "design: need directions spread over the sphere on at least 2 non-zero shells)")
        super().__init__(b, lm_options=lm_options)
        self.min_kurtosis, self.max_kurtosis = float(min_kurtosis), float(max_kurtosis)
        self.min_signal = float(min_signal)
        self.wls_iter = int(wls_iter)
        # dipy's eigenvalue floor: 1e-6 / -min(design matrix in s/mm²), in mm²/s
        self.min_diffusivity = 1e-6 / (-(self.X[:, :6] * 1000.0).min()) if (self.X[:, :6] < 0).any() else 0.0
        self.b_max = float(b.max())

    @classmethod
    def from_acquisition(cls, bvals, bvecs=None, *, trace: bool = False, b0_threshold: float = B0_THRESHOLD,
                         **options):
        """Full-tensor :class:`DKI` for a series with b-vectors, else (or with ``trace``) :class:`TraceDKI`
        on the direction-averaged shells.

        ``bounds`` apply to trace DKI only (its parameters S0, D, K): the full-tensor maps are derived
        from the 22 tensor coefficients, which no method bounds (``wls``, ``ols`` are linear, ``lsq``
        keeps S0 >= 0 alone, ``cwls`` applies its own constraints on D(n) and K(n)).

        Raises
        ------
        QMRIInputError
            Full tensor asked for with fewer than 15 distinct directions (the message suggests trace DKI),
            or with ``bounds``.
        """
        if bvecs is not None and not trace:
            nd = n_directions(bvals, bvecs, b0_threshold)
            if nd < 15:
                raise QMRIInputError(f"{nd} distinct directions (b > {b0_threshold:g} s/mm2); full-tensor DKI needs "
                                     ">= 15 (use --trace, trace=True, for trace/powder DKI)")
            if options.get("bounds"):
                raise QMRIInputError("full-tensor DKI takes no bounds (--bounds): its maps derive from the 22 tensor "
                                     "coefficients, which no method bounds (cwls constrains D(n) >= 0 and "
                                     "0 <= K(n) <= 3/(b_max D(n))); bounds apply to trace DKI (--trace): "
                                     f"{', '.join(cls.parameter_names())}")
            options.pop("bounds", None)
            return cls(bvals, bvecs, b0_threshold=b0_threshold, **options)
        from qmri.models.diffusion.dki.trace import TraceDKI

        options.pop("bvec_frame", None)  # trace DKI has no tensors to turn
        return TraceDKI(bvals, bvecs=bvecs, b0_threshold=b0_threshold, **options)

    @classmethod
    def parameter_names(cls) -> list[str]:
        """Names accepted by ``bounds``: those of trace DKI (the full tensor takes none, :meth:`from_acquisition`)."""
        from qmri.models.diffusion.dki.trace import DKI_TRACE_MODEL

        return DKI_TRACE_MODEL.names

    @classmethod
    def check_bounds_apply(cls, method, names) -> None:
        """Bounds of the ``dki`` command are those of trace DKI, whose methods all apply them; whether a
        series gets trace DKI is known once its b-vectors are read (:meth:`from_acquisition` refuses
        bounds for the full tensor)."""

    # Phantom and demo ----------------------------------------------------------------------
    demo = DKIDemo(parameters=("MD", "FA", "MK", "MKT"), phantom={"snr": 30.0, "block": (16, 16, 4)},
                   columns={"K<0 %": "voxels (%) whose fitted tensors give a negative apparent kurtosis along one "
                                     "of 100 directions (not physical; cwls constrains it away; '-': the method "
                                     "gives no tensors)"})
    #: Shipped networks: the trace model (``dki-trace``, 3 networks) and the full tensor (``dki``).
    network = DKINetwork(pretrained={"n": 100_000, "snr": "10:60", "ensemble": 1},
                         pretrained_trace={"n": 50_000, "snr": "10:60", "ensemble": 3})

    @classmethod
    def has_phantom(cls) -> bool:
        return True

    @classmethod
    def phantom(cls, *, snr=None, seed: int = 0, block=None):
        """The DKI phantom (:func:`qmri.models.diffusion.dki.phantom.dki_phantom`; SNR 30 by default)."""
        from qmri.models.diffusion.dki.phantom import dki_phantom

        return dki_phantom(snr=30.0 if snr is None else snr, seed=seed, block=block)

    @classmethod
    def settings_before_recorded(cls, provenance: dict) -> dict:
        """Sidecars without ``model_settings``: the recorded b-values, b-vectors, ``b0_threshold``,
        kurtosis clip, signal floor and WLS reweightings."""
        if "bvecs" not in provenance or "bvals" not in provenance:
            raise QMRIInputError("DKI: the sidecars record no b-vectors (maps written by an older qmri)")
        settings = {"bvals": provenance["bvals"], "bvecs": provenance["bvecs"],
                    "b0_threshold": provenance.get("b0_threshold", B0_THRESHOLD)}
        clip = provenance.get("kurtosis_clip")
        if isinstance(clip, list) and len(clip) == 2:
            settings.update(min_kurtosis=clip[0], max_kurtosis=clip[1])
        for key, name in (("min_signal", "min_signal"), ("wls_reweightings", "wls_iter")):
            if key in provenance:
                settings[name] = provenance[key]
        return settings

    def curve(self, values, measured, covariates=None, method=None):
        """One point per b-shell: the measured signal averaged over the shell's directions and the
        model's prediction averaged over the same directions (a signal that depends on direction
        drawn against b alone would zig-zag); the single volumes are kept as ``points``.

        The scalar maps do not determine the signal: the voxel is fitted again with ``method``
        (deterministic: the coefficients behind the maps) and exp(X β) is averaged per shell
        (:func:`~qmri.models.diffusion.acquisition.powder_average`, as for the measured signal).
        """
        y = np.asarray(measured, dtype=np.float64)
        beta = self.coefficients(y[None, :], method or self.default_method)[0][0]
        fitted = np.exp(self.X @ beta)
        avg, b = powder_average(np.stack([y, fitted]), self.bvals, self.bvecs, self.b0_threshold)
        return {"x": b, "measured": avg[0], "fitted": avg[1], "xlabel": "b (s/mm2)",
                "ylabel": f"signal ({self.data_unit})", "points": (self.bvals, y),
                "measured_label": "measured, mean over each shell's directions",
                "fitted_label": "fitted, mean over the same directions", "points_label": "measured, each volume"}

    def design(self, bvals) -> np.ndarray:
        """The first 21 columns of the design matrix (ms/µm²): the acquisition of the ``lsq`` signal."""
        return self.X[:, :21]

    def describe(self, method: str) -> str:
        return f"full-tensor DKI, method {method}, {describe_shells(self.bvals, self.bvecs, self.b0_threshold)}"

    def output_units(self):
        return dict(MAP_UNITS)

    def provenance(self):
        prov = {
            **super(DiffusionModel, self).provenance(),  # the settings; the tensor's facts are its own
            "bvals": self.bvals.tolist(), "bvecs": self.bvecs.tolist(), "units_b": "s/mm2",
            "b0_threshold": self.b0_threshold,
            "n_directions": n_directions(self.bvals, self.bvecs, self.b0_threshold),
            "internal_units": "b in ms/um2, diffusivities in um2/ms (outputs in mm2/s)",
            "kurtosis_clip": [self.min_kurtosis, self.max_kurtosis], "min_signal": self.min_signal,
            "eigenvalue_floor_mm2_s": self.min_diffusivity, "wls_reweightings": self.wls_iter,
            "constraints_cwls": (f"D(n) >= 0, 0 <= K(n) <= {KURTOSIS_MONOTONIC_C:g}/(b_max D(n)) on "
                                 f"{N_CONSTRAINT_DIRECTIONS} directions, b_max = {self.b_max:g} s/mm2 "
                                 "(Tabesh et al., MRM 2011;65:823)"),
            "mk": "analytic (Tabesh et al. 2011)", "mkt": "mean of the kurtosis tensor (Hansen et al. 2013)",
            "reference": DKI_TENSOR_MODEL.reference,
        }
        return prov

    def signal(self, S0, dt, kt) -> np.ndarray:
        """Noise-free DKI signal.

        Parameters
        ----------
        S0 : array_like, shape (...)
        dt : array_like, shape (..., 6)
            Diffusion tensor (xx, xy, yy, xz, yz, zz) in mm²/s.
        kt : array_like, shape (..., 15)
            Kurtosis tensor elements (dipy order, unitless).

        Returns
        -------
        ndarray, shape (..., n)
        """
        return dki_signal(self.bvals, self.bvecs, dt, kt, S0)

    def complete(self, res, scale, good):
        """The scalar maps (``MD``, ``FA``, ``MK``...) of the declared coefficients (S0 relative to
        ``scale``, D and MD²W), as every DKI method gives them; voxels not ``good`` fail."""
        P = np.stack([res.params[k] for k in self.spec.names], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            beta = np.concatenate([P[:, 1:], np.log(P[:, :1] * scale[:, None])], axis=1)
        maps = tensor_maps(beta, min_diffusivity=self.min_diffusivity, min_kurtosis=self.min_kurtosis,
                           max_kurtosis=self.max_kurtosis)
        del maps["rmse"], maps["r2"]
        res.params = maps
        res.rmse = res.rmse * scale
        res.mark_failed(~good | ~np.isfinite(maps["MD"]))

    def check_crlb(self):
        raise QMRIInputError("--crlb: the full-tensor DKI maps (MD, FA, MK, ...) are functions of the 22 tensor "
                             "coefficients and have no Cramer-Rao bound maps here; use --trace (trace DKI: S0, D, K "
                             "have them)")

    def coefficients(self, Y, method: str = "wls") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """β (n, 22), status (n,) and iterations (n,) of ``method`` on signals ``Y`` (n, m)."""
        return self.method(method).solve(self, np.ascontiguousarray(Y, dtype=np.float64))
