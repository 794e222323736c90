"""T1 mapping from variable-flip-angle (VFA) spoiled gradient-echo data.

Signal (see :mod:`qmri.models.dce.relaxation`)::

    S(α) = M0 · sin(α) · (1 - E1) / (1 - cos(α) · E1),   E1 = exp(-TR/T1)

with α the actual flip angle (nominal × relative B1) in rad, TR and T1 in s.

Methods
-------
``linear`` (DESPOT1; Deoni, Rutt, Peters, MRM 2003;49:515, doi:10.1002/mrm.10407)
    The signal equation is linear in the transformed variables ``y = S/sin α`` and
    ``x = S/tan α``: ``y = E1 · x + M0 (1 - E1)``; an ordinary least-squares line gives
    ``T1 = -TR / ln(slope)`` and ``M0 = intercept / (1 - slope)``. Needs one common TR.
``lsq`` (default; formerly ``nonlinear``, still accepted)
    Bounded Levenberg–Marquardt fit of (M0, T1) to the signals (:func:`qmri.fitting.fit_lm`),
    started from the linear solution. Allows a different TR per flip angle.

B1 correction: a relative flip-angle scale per voxel (1 = nominal), a covariate of the declared
model: every voxel is fitted with its own, exact B1 (the kernel scales the nominal flip angles by it).

Signals are divided per voxel by their mean before fitting (M0 bounds are relative to it); M0
is scaled back in the output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qmri.errors import QMRIInputError
from qmri.fitting.lm import LMOptions
from qmri.fitting.result import STATUS_CONVERGED, STATUS_FAILED, FitResult
from qmri.jit import njit, prange
from qmri.models.base import Covariate, Parameter, SignalModel, register
from qmri.models.dce.relaxation import spgr_scalar, spgr_signal
from qmri.models.facets import CommandText
from qmri.models.methods import LeastSquares, Method, table
from qmri.models.model import Model

REFERENCE = "Deoni, Rutt, Peters, MRM 2003;49:515 (doi:10.1002/mrm.10407); SPGR steady-state signal"


@njit(cache=True)
def _vfa_terms(m0, t1, a, tr):
    """Signal and its derivatives ∂S/∂M0, ∂S/∂T1 at one flip angle ``a`` (rad) and TR (s)."""
    d_m0 = spgr_scalar(1.0, 1.0 / t1, a, tr)
    e = np.exp(-tr / t1)
    ca = np.cos(a)
    den = 1.0 - ca * e
    # ∂S/∂E1 = M0 sin a (cos a - 1) / den², ∂E1/∂T1 = E1 TR / T1²
    d_t1 = m0 * np.sin(a) * (ca - 1.0) / (den * den) * e * tr / (t1 * t1)
    return m0 * d_m0, d_m0, d_t1


@njit(cache=True)
def t1_vfa_signal(p, acq, cov, out):
    """VFA signal; ``p = (M0, T1)``, ``acq[:, 0]`` nominal flip angle (rad), ``acq[:, 1]`` TR (s),
    ``cov[0]`` relative B1."""
    m0, t1 = p[0], p[1]
    for i in range(acq.shape[0]):
        out[i] = spgr_scalar(m0, 1.0 / t1, acq[i, 0] * cov[0], acq[i, 1])


@njit(cache=True)
def t1_vfa_jacobian(p, acq, cov, J):
    """Analytic ∂S/∂(M0, T1), shape (n_fa, 2)."""
    for i in range(acq.shape[0]):
        _, J[i, 0], J[i, 1] = _vfa_terms(p[0], p[1], acq[i, 0] * cov[0], acq[i, 1])


@njit(cache=True)
def t1_vfa_signal_jacobian(p, acq, cov, out, J):
    """Signal and Jacobian in one pass (the least-squares engine's kernel)."""
    for i in range(acq.shape[0]):
        out[i], J[i, 0], J[i, 1] = _vfa_terms(p[0], p[1], acq[i, 0] * cov[0], acq[i, 1])


def t1_vfa_signal_torch(params, acq, cov=None):
    """VFA signal in torch: ``params`` (N, 2) as (M0, T1), ``acq`` (n_fa, 2), ``cov`` (N, 1) relative
    B1 or None → (N, n_fa)."""
    import torch

    a = acq[:, 0] if cov is None else acq[:, 0] * cov[:, 0:1]
    tr = acq[:, 1]
    m0 = params[:, 0:1]
    t1 = params[:, 1:2]
    e = torch.exp(-tr / t1)
    return m0 * torch.sin(a) * (1.0 - e) / (1.0 - torch.cos(a) * e)


def _example_acquisition():
    return np.column_stack([np.deg2rad([2.0, 5.0, 10.0, 15.0, 20.0]), np.full(5, 0.005)])


T1_VFA = register(SignalModel(
    name="t1_vfa",
    parameters=(
        Parameter("M0", "a.u.", 0.0, np.inf, 10.0,
                  "equilibrium signal; bounds relative to the voxel's mean signal"),
        Parameter("T1", "s", 1e-3, 20.0, 1.0, "longitudinal relaxation time"),
    ),
    signal=t1_vfa_signal,
    jacobian=t1_vfa_jacobian,
    torch_signal=t1_vfa_signal_torch,
    acquisition_doc="acq[:, 0]: nominal flip angle in rad; acq[:, 1]: TR in s",
    example_acquisition=_example_acquisition,
    reference=REFERENCE,
    signal_jacobian=t1_vfa_signal_jacobian,
    covariates=(Covariate("B1", "", 1.0, "relative flip-angle scale (actual / nominal)"),),
))


@njit(parallel=True, cache=True)
def _despot1_batch(fa, tr, Y, b1, P, status, rmse, r2):
    """DESPOT1 line fit per voxel: fa (m,) rad nominal, tr (m,) s, Y (n, m), b1 (n,) → P (n, 2)."""
    n, m = Y.shape
    for v in prange(n):
        ok = np.isfinite(b1[v]) and b1[v] > 0.0
        for i in range(m):
            if not np.isfinite(Y[v, i]):
                ok = False
        if ok:
            sx = 0.0
            sy = 0.0
            sxx = 0.0
            sxy = 0.0
            trm = 0.0
            for i in range(m):
                a = fa[i] * b1[v]
                y = Y[v, i] / np.sin(a)
                x = Y[v, i] / np.tan(a)
                sx += x
                sy += y
                sxx += x * x
                sxy += x * y
                trm += tr[i]
            trm /= m
            det = m * sxx - sx * sx
            if det > 0.0:
                slope = (m * sxy - sx * sy) / det
                icpt = (sy - slope * sx) / m
                if slope > 0.0 and slope < 1.0 and icpt > 0.0:
                    P[v, 0] = icpt / (1.0 - slope)
                    P[v, 1] = -trm / np.log(slope)
                else:
                    ok = False
            else:
                ok = False
        if not ok:
            P[v, 0] = np.nan
            P[v, 1] = np.nan
            status[v] = STATUS_FAILED
            rmse[v] = np.nan
            r2[v] = np.nan
            continue
        status[v] = STATUS_CONVERGED
        mean = 0.0
        for i in range(m):
            mean += Y[v, i]
        mean /= m
        ssr = 0.0
        sst = 0.0
        for i in range(m):
            f = spgr_scalar(P[v, 0], 1.0 / P[v, 1], fa[i] * b1[v], tr[i])
            ssr += (f - Y[v, i]) ** 2
            sst += (Y[v, i] - mean) ** 2
        rmse[v] = np.sqrt(ssr / m)
        r2[v] = 1.0 - ssr / sst if sst > 0.0 else np.nan


def _fit_linear(model, Y, C):
    Yn, scale, good = model.normalise(Y, C)
    P, status, rmse, r2 = model.despot1(Yn, C)
    res = FitResult.closed_form(T1_VFA.names, P, status, rmse, r2)
    model.complete(res, scale, good)
    return res


def lsq_start(model, Yn, C):
    """Start of ``lsq``: the DESPOT1 solution, else T1 = 1 s with M0 matching the first flip angle."""
    p0 = model.despot1(Yn, C)[0]
    miss = ~np.all(np.isfinite(p0), axis=1)
    if miss.any():
        b1 = model._b1(Yn, C)[miss]
        t1_0 = np.clip(1.0, model.lower[1], model.upper[1])
        b1_ok = np.where(np.isfinite(b1) & (b1 > 0), b1, 1.0)
        p0[miss, 0] = Yn[miss, 0] / spgr_signal(1.0, t1_0, model.fa_deg[0] * b1_ok, model.tr[0])
        p0[miss, 1] = t1_0
    return np.clip(np.where(np.isfinite(p0), p0, 1.0), model.lower, model.upper)


LSQ = LeastSquares("lsq", "bounded Levenberg-Marquardt fit of (M0, T1) from the DESPOT1 start (default; formerly "
                   "'nonlinear')", reference=REFERENCE, start=lsq_start)
LINEAR = Method("linear", "DESPOT1 line fit (one TR for all flip angles; unbounded: --bounds need the lsq "
                "method)", _fit_linear, reference="DESPOT1: " + REFERENCE, bounded=False)


class VFA(Model):
    """Variable-flip-angle T1 mapping bound to flip angles and TR.

    Parameters
    ----------
    fa_deg : array_like, shape (n_fa,)
        Nominal flip angles in degrees, in the order of the data's last axis (0 < α < 180).
    tr : float or array_like, shape (n_fa,)
        Repetition time(s) in s (> 0). The ``linear`` method needs a single TR.
    b1 : float or array_like, optional
        Relative flip-angle scale (1 = nominal): a scalar for all voxels or a map with the
        data's spatial shape (``fit`` checks it). Actual flip angle = nominal × B1, exact per voxel.
        Voxels of a map with a non-finite or non-positive B1 are reported as failed.
    bounds : dict, optional
        ``{"M0": (lo, hi), "T1": (lo, hi)}``; defaults M0 0–∞ (relative to the voxel's mean
        signal) and T1 0.001–20 s.
    lm_options : qmri.fitting.LMOptions, optional
        Stopping rules of the nonlinear fit.

    Raises
    ------
    QMRIInputError
        Fewer than 2 flip angles, flip angles outside (0, 180)°, non-positive TR, TR count not
        1 or n_fa, TR above 1 s (milliseconds given), scalar B1 not finite and > 0, bad bounds.

    Examples
    --------
    >>> import numpy as np
    >>> from qmri.models import VFA
    >>> model = VFA([2, 5, 10, 15], tr=0.005)
    >>> sig = model.signal(dict(M0=1000.0, T1=1.2))
    >>> maps = model.fit(sig[None, :], method="linear")
    >>> round(float(maps["T1"][0]), 4)
    1.2
    """

    command = "t1"
    cli = CommandText(
        summary="map T1 (s) and M0 from variable-flip-angle SPGR images",
        description=("Fit the spoiled gradient-echo signal to a variable-flip-angle series voxel by voxel (DESPOT1 "
                     "line fit or bounded Levenberg-Marquardt from it). T1 in s, flip angles in degrees, TR in s. "
                     "Writes T1, M0 and the fit quality maps."))
    workflow = "vfa"
    methods = table(LSQ, LINEAR)
    default_method = "lsq"
    method_aliases = {"nonlinear": "lsq"}  # its name before every least-squares fit was called lsq
    amplitude = "M0"
    spec = T1_VFA

    def __init__(self, fa_deg, tr, *, b1=None, bounds=None, lm_options: LMOptions | None = None):
        fa = np.atleast_1d(np.asarray(fa_deg, dtype=np.float64))
        if fa.ndim != 1 or fa.size < 2:
            raise QMRIInputError(f"VFA T1 mapping needs at least 2 flip angles, got {fa.size}")
        if not np.all(np.isfinite(fa)) or np.any(fa <= 0) or np.any(fa >= 180):
            raise QMRIInputError("flip angles must be in (0, 180) degrees")
        if np.unique(fa).size < 2:
            raise QMRIInputError("VFA T1 mapping needs at least 2 distinct flip angles")
        trs = np.atleast_1d(np.asarray(tr, dtype=np.float64))
        if trs.size == 1:
            trs = np.full(fa.size, trs[0])
        if trs.shape != fa.shape:
            raise QMRIInputError(f"give one TR or one per flip angle ({fa.size}), got {trs.size}")
        if not np.all(np.isfinite(trs)) or np.any(trs <= 0):
            raise QMRIInputError("TR must be positive (seconds)")
        if np.any(trs > 1.0):
            raise QMRIInputError(f"TR of {trs.max():g} s is implausible for SPGR; give TR in seconds (e.g. 0.005)")
        self.fa_deg = fa
        self.tr = trs
        self.b1 = None if b1 is None else np.asarray(b1, dtype=np.float64)
        if self.b1 is not None and self.b1.ndim == 0 and not (np.isfinite(self.b1) and self.b1 > 0):
            raise QMRIInputError(f"B1 (relative flip-angle scale) must be finite and > 0, got {float(self.b1)}")
        super().__init__(T1_VFA, np.column_stack([np.deg2rad(fa), trs]), bounds=bounds, covariates={"B1": self.b1},
                         lm_options=lm_options)

    # Forward model ---------------------------------------------------------------------------
    def signal(self, params, b1=1.0) -> np.ndarray:
        """Noise-free signals for parameters ``{"M0": ..., "T1": ...}`` (scalars or arrays, T1 in s).

        Returns an array of shape ``broadcast(params, b1).shape + (n_fa,)``:
        :meth:`predict` with the B1 covariate ``b1``.
        """
        return self.predict(params, np.asarray(b1, dtype=np.float64)[..., None])

    def predict(self, params, covariates=None) -> np.ndarray:
        """Noise-free SPGR signals for ``{"M0": ..., "T1": ...}`` (scalars or arrays, T1 in s) and the
        B1 covariate (relative flip-angle scale, shape (..., 1) or (1,); default 1), in closed form
        (:func:`qmri.models.dce.relaxation.spgr_signal`; Fram et al., MRI 1987;5:201).

        Returns an array of shape ``broadcast(params, B1).shape + (n_fa,)``.
        """
        b1 = 1.0 if covariates is None else np.asarray(covariates, dtype=np.float64)[..., 0]
        m0, t1, b = np.broadcast_arrays(np.asarray(params["M0"], float), np.asarray(params["T1"], float),
                                        np.asarray(b1, float))
        return spgr_signal(m0[..., None], t1[..., None], self.fa_deg * b[..., None], self.tr)

    # Fitting ---------------------------------------------------------------------------------
    def check_method(self, method):
        if method == "linear" and np.unique(self.tr).size > 1:
            raise QMRIInputError("the linear (DESPOT1) method needs one TR for all flip angles; use method='lsq'")

    def describe(self, method: str) -> str:
        return (f"VFA T1, method {method}, flip angles {', '.join(f'{a:g}' for a in self.fa_deg)} deg, "
                f"TR {', '.join(f'{t:g}' for t in np.unique(self.tr))} s"
                + (", B1-corrected" if self.b1 is not None else ""))

    #: A B1 map is recorded as its file (``b1_map``, by the file workflow), not in the settings.
    map_settings = ("b1",)

    def provenance(self):
        return {
            **super().provenance(),
            # BIDS names and units: flip angle in degrees, TR in s
            "flip_angle": self.fa_deg.tolist(),
            "repetition_time_excitation": self.tr.tolist(),
            "b1_corrected": self.b1 is not None,
            "bounds": {n: [float(a), float(b)] for n, a, b in zip(T1_VFA.names, self.lower, self.upper)},
            "bounds_note": "M0 bounds are relative to the voxel's mean signal",
            "reference": REFERENCE,
        }

    @classmethod
    def recorded_settings(cls, provenance: dict) -> dict:
        """The recorded settings (:meth:`Model.recorded_settings <qmri.models.model.Model.recorded_settings>`)
        with the B1 map read again from the file the sidecars name, when the fit was B1-corrected by a
        map (a map is not copied into the settings, :attr:`map_settings`).

        Raises
        ------
        QMRIInputError
            A B1-corrected fit whose B1 map is no longer where the sidecars say.
        """
        settings = super().recorded_settings(provenance)
        if provenance.get("b1_corrected") and settings.get("b1") is None:
            from qmri import io

            path = provenance.get("b1_map")
            if not path or not Path(path).is_file():
                raise QMRIInputError(f"the fit was B1-corrected but its B1 map {path} is not found")
            b1 = io.image_data(io.load_nifti(path, what="B1 map"))
            settings["b1"] = b1.reshape(b1.shape[:3]) / (100.0 if provenance.get("b1_units") == "percent" else 1.0)
        return settings

    @classmethod
    def settings_before_recorded(cls, provenance: dict) -> dict:
        """Sidecars without ``model_settings``: the recorded flip angles, TR and bounds."""
        if "flip_angle" not in provenance or "repetition_time_excitation" not in provenance:
            raise QMRIInputError("VFA: the sidecars record no flip angles and TR")
        return {"fa_deg": provenance["flip_angle"], "tr": provenance["repetition_time_excitation"],
                "bounds": cls.recorded_bounds(provenance, T1_VFA)}

    def axis(self):
        return self.fa_deg, "flip angle (deg)"

    @staticmethod
    def _b1(Y, C):
        return np.ones(Y.shape[0]) if C is None else C[:, 0]

    def normalise(self, Y, C):
        """Signals divided by each voxel's mean; voxels with a non-positive mean or B1 are not good."""
        b1 = self._b1(Y, C)
        scale = np.mean(Y, axis=1)
        good = np.isfinite(scale) & (scale > 0) & np.isfinite(b1) & (b1 > 0)
        scale = np.where(good, scale, 1.0)
        Yn = np.ascontiguousarray(Y / scale[:, None])
        Yn[~good] = np.nan
        return Yn, scale, good

    def despot1(self, Yn, C):
        """DESPOT1 line fit of normalised signals (n, n_fa) with each voxel's B1: P (n, 2), status, rmse, r2."""
        b1 = self._b1(Yn, C)
        b1 = np.where(np.isfinite(b1) & (b1 > 0), b1, 1.0)
        n = Yn.shape[0]
        P = np.empty((n, 2))
        status = np.empty(n, dtype=np.int8)
        rmse = np.empty(n)
        r2 = np.empty(n)
        _despot1_batch(np.deg2rad(self.fa_deg), self.tr, Yn, b1, P, status, rmse, r2)
        return P, status, rmse, r2
