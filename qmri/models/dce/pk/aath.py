"""Adiabatic approximation to the tissue homogeneity model, AATH (St Lawrence & Lee, JCBFM
1998;18:1365; Sourbron & Buckley, NMR Biomed 2013;26:1004)::

    C(t) = Cp ⊛ R(τ),   R(t) = f for 0 ≤ t < Tc,   R(t) = E f exp(-E f (t - Tc)/ve) for t ≥ Tc,

with ``f = Fp/100`` (1/min), ``τ = t - delay``, ``Tc = vp/f`` the capillary transit time and
``E = 1 - exp(-PS/f)`` the extraction fraction; derived outputs ``Ktrans = E f`` (1/min),
``kep = Ktrans/ve`` (1/min) and ``Tc`` (s). The response jumps at Tc; it is integrated exactly as
``f ∫_{τ-Tc}^{τ} Cp + E f (Cp ⊛ exp(-kep t))(τ - Tc)``, both exact for the piecewise-linear Cp, so
the jump needs no finer grid.

AATH has no linear form (its response is shifted by Tc, so no integrated equation is linear in its
parameters): ``lsq`` starts from the 2CXM's linear estimate (same parameters) and, where that fit
ends at a transit time outside :data:`TC_RANGE`, from a second start (:func:`refine`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from qmri.fitting.lm import fit_lm
from qmri.jit import njit
from qmri.models.dce.convolution import expconv, expconv_torch
from qmri.models.dce.kernels import zero, zero2
from qmri.models.dce.pk import PKModel, tissue_prior
from qmri.models.dce.twins import delay_min, parts


@njit(cache=True)
def _aath_rates(Fp, PS, ve, vp):
    """f (1/min), the extraction fraction E = 1 - exp(-PS/f), its complement exp(-PS/f), k = E f / ve
    (1/min) and the capillary transit time Tc = vp / f (min)."""
    f = Fp / 100.0
    e = np.exp(-PS / f)
    E = -np.expm1(-PS / f)
    return f, E, e, E * f / ve, vp / f


@njit(cache=True)
def _aath_signal(Fp, PS, ve, vp, d, acq, out):
    f, E, e, k, Tc = _aath_rates(Fp, PS, ve, vp)
    zero(out)
    dm = d / 60.0
    # f ∫_{τ-Tc}^{τ} Cp  +  E f ∫ Cp(u) exp(-k (τ - Tc - u)) du: each an exact piecewise-linear integral
    expconv(acq[2], acq[1], acq[3], acq[4], 0.0, dm, f, out, 0.0, out, 0.0, out, 0.0, out)
    expconv(acq[2], acq[1], acq[3], acq[4], 0.0, dm + Tc, -f, out, 0.0, out, 0.0, out, 0.0, out)
    expconv(acq[2], acq[1], acq[3], acq[4], k, dm + Tc, E * f, out, 0.0, out, 0.0, out, 0.0, out)


@njit(cache=True)
def _aath_jacobian(Fp, PS, ve, vp, d, acq, J, has_delay, out, want_out):
    """Columns: Fp, PS, ve, vp, [delay]; with ``want_out`` also the signal into ``out``.

    With τ = t - delay, τc = τ - Tc, P the plug-flow part f (∫_{τc}^{τ} Cp) and F_k, G_k = ∂F_k/∂k
    the exponential convolution at τc: C = P + E f F_k, ∂C/∂Tc = f (1 - E) Cp(τc) + E f k F_k,
    ∂C/∂delay = -f Cp(τ) + ∂C/∂Tc (per min), ∂C/∂f = C/f + f F_k ∂E/∂f + E f G_k ∂k/∂f - ∂C/∂Tc Tc/f.
    """
    f, E, e, k, Tc = _aath_rates(Fp, PS, ve, vp)
    dm = d / 60.0
    zero2(J)
    expconv(acq[2], acq[1], acq[3], acq[4], 0.0, dm, f, J[:, 0], 0.0, J[:, 0], -f if has_delay else 0.0,
            J[:, 4 if has_delay else 0], 0.0, J[:, 0])
    expconv(acq[2], acq[1], acq[3], acq[4], 0.0, dm + Tc, -f, J[:, 0], 0.0, J[:, 0], 1.0, J[:, 1], 0.0, J[:, 0])
    expconv(acq[2], acq[1], acq[3], acq[4], k, dm + Tc, 1.0, J[:, 2], 1.0, J[:, 3], 0.0, J[:, 0], 0.0, J[:, 0])
    dE_df = -e * PS / (f * f)
    dE_dPS = e / f
    dk_df = (E + f * dE_df) / ve
    dk_dPS = f * dE_dPS / ve
    for i in range(J.shape[0]):
        P = J[i, 0]
        cpc = J[i, 1]
        Fk = J[i, 2]
        Gk = J[i, 3]
        C = P + E * f * Fk
        if want_out:
            out[i] = C
        dTc = f * e * cpc + E * f * k * Fk
        J[i, 0] = (C / f + f * Fk * dE_df + E * f * Gk * dk_df - dTc * Tc / f) / 100.0
        J[i, 1] = f * Fk * dE_dPS + E * f * Gk * dk_dPS
        J[i, 2] = -E * f * Gk * k / ve
        J[i, 3] = dTc / f
        if has_delay:
            J[i, 4] = (J[i, 4] + dTc) / 60.0


@njit(cache=True)
def aath_signal(p, acq, cov, out):
    """AATH; p = (Fp mL/min/100mL, PS 1/min, ve, vp)."""
    _aath_signal(p[0], p[1], p[2], p[3], 0.0, acq, out)


@njit(cache=True)
def aath_jacobian(p, acq, cov, J):
    _aath_jacobian(p[0], p[1], p[2], p[3], 0.0, acq, J, False, J[:, 0], False)


@njit(cache=True)
def aath_signal_jacobian(p, acq, cov, out, J):
    _aath_jacobian(p[0], p[1], p[2], p[3], 0.0, acq, J, False, out, True)


@njit(cache=True)
def aath_delay_signal(p, acq, cov, out):
    """AATH with delay; p = (Fp, PS, ve, vp, delay s)."""
    _aath_signal(p[0], p[1], p[2], p[3], p[4], acq, out)


@njit(cache=True)
def aath_delay_jacobian(p, acq, cov, J):
    _aath_jacobian(p[0], p[1], p[2], p[3], p[4], acq, J, True, J[:, 0], False)


@njit(cache=True)
def aath_delay_signal_jacobian(p, acq, cov, out, J):
    _aath_jacobian(p[0], p[1], p[2], p[3], p[4], acq, J, True, out, True)


def aath_twin(params, acq, delay_idx):
    """AATH in torch; params (N, 4 [+ delay])."""
    import torch

    t, c, fr = parts(acq)
    f, PS, ve, vp = params[:, 0] / 100.0, params[:, 1], params[:, 2], params[:, 3]
    E = -torch.expm1(-PS / f)
    dm = delay_min(params, delay_idx)
    dc = dm + vp / f                                        # delay + capillary transit time Tc (min)
    zero_ = torch.zeros_like(f)
    P1, _ = expconv_torch(t, c, fr, zero_, dm)
    P2, _ = expconv_torch(t, c, fr, zero_, dc)
    Fk, _ = expconv_torch(t, c, fr, E * f / ve, dc)
    return f[:, None] * (P1 - P2) + (E * f)[:, None] * Fk


def ktrans(p):
    """Ktrans = E f (1/min), f = Fp/100, E = 1 - exp(-PS/f)."""
    f = p["Fp"] / 100.0
    return -np.expm1(-p["PS"] / f) * f


#: Capillary transit times (s) outside which a first fit is tried again from a second start
#: (:func:`refine`).
TC_RANGE = (1.0, 30.0)


def refine(model, res, Yn, C):
    """Second start of ``lsq``: where the fit from the 2CXM start ends at a capillary transit time
    ``Tc = vp / (Fp/100)`` outside :data:`TC_RANGE` (1–30 s), a second Levenberg–Marquardt fit from
    the linear estimate with ``Fp`` set to give the nearer end of that range as Tc; per voxel the
    fit with the smaller residual is kept (``res`` is updated in place). The 2CXM start is not
    always in AATH's basin: with low flow and a long transit (Fp ≈ 10 mL/min/100mL, Tc 35–55 s) the
    first fit can end at a Tc longer than the acquisition with vp far too large, and with a fitted
    delay and high flow (Tc ≈ 5 s) at Tc < 1 s with vp at its lower bound."""
    names = model.spec.names
    lo, hi = TC_RANGE
    with np.errstate(divide="ignore", invalid="ignore"):
        tc = 60.0 * res.params["vp"] / (res.params["Fp"] / 100.0)
    sel = np.flatnonzero((tc < lo) | (tc > hi))
    if sel.size == 0:
        return
    Yn = np.ascontiguousarray(Yn[sel])
    C = None if C is None else np.ascontiguousarray(C[sel])
    P0 = model.linear_estimate(Yn)
    tc0 = np.where(tc[sel] > hi, hi, lo) / 60.0
    P0[:, names.index("Fp")] = 100.0 * P0[:, names.index("vp")] / tc0
    P0 = np.ascontiguousarray(np.clip(P0, model.lower, model.upper))
    opts = dataclasses.replace(model.lm_options, compute_se=bool(res.se))
    other = fit_lm(model.spec, model.acq, Yn, P0, covariates=C, lower=model.lower, upper=model.upper, options=opts)
    better = other.rmse < np.where(np.isfinite(res.rmse[sel]), res.rmse[sel], np.inf)
    into, take = sel[better], np.flatnonzero(better)
    for k in names:
        res.params[k][into] = other.params[k][take]
    for k in res.se:
        res.se[k][into] = other.se[k][take]
    for field in ("status", "n_iter", "rmse", "r2"):
        getattr(res, field)[into] = getattr(other, field)[take]


MODEL = PKModel(
    name="aath",
    label="AATH",
    title="adiabatic approximation to the tissue homogeneity model",
    parameters=("Fp", "PS", "ve", "vp+"),
    kernels=(aath_signal, aath_jacobian, aath_signal_jacobian),
    delay_kernels=(aath_delay_signal, aath_delay_jacobian, aath_delay_signal_jacobian),
    torch_signal=aath_twin,
    reference=("St Lawrence & Lee, JCBFM 1998;18:1365 (adiabatic approximation to the tissue homogeneity model); "
               "Sourbron & Buckley, NMR Biomed 2013;26:1004"),
    start_from="2cxm",
    derived={"Ktrans": ("1/min", ktrans), "kep": ("1/min", lambda p: ktrans(p) / p["ve"]),
             "Tc": ("s", lambda p: 60.0 * p["vp"] / (p["Fp"] / 100.0))},
    prior=tissue_prior("Fp", "PS", "ve", "vp"),
    refine=refine,
)
