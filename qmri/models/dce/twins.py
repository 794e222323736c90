"""Torch twins of the DCE models: the same equations, differentiable and batched over voxels."""

from __future__ import annotations

from qmri.models.dce.convolution import expconv_torch


def _torch_parts(acq):
    return acq[0], acq[1], acq[4]


def _delay_min(params, idx):
    import torch

    return params[:, idx] / 60.0 if idx is not None else torch.zeros_like(params[:, 0])


def tofts_torch(params, acq, has_vp, delay_idx):
    t, c, fr = _torch_parts(acq)
    Kt, ve = params[:, 0], params[:, 1]
    F, cp = expconv_torch(t, c, fr, Kt / ve, _delay_min(params, delay_idx))
    out = Kt[:, None] * F
    if has_vp:
        out = out + params[:, 2:3] * cp
    return out


def patlak_torch(params, acq, delay_idx):
    import torch

    t, c, fr = _torch_parts(acq)
    F, cp = expconv_torch(t, c, fr, torch.zeros_like(params[:, 0]), _delay_min(params, delay_idx))
    return params[:, 0:1] * F + params[:, 1:2] * cp


def twocum_torch(params, acq, delay_idx):
    import torch

    t, c, fr = _torch_parts(acq)
    f, PS, vp = params[:, 0] / 100.0, params[:, 1], params[:, 2]
    u = f + PS
    dm = _delay_min(params, delay_idx)
    F, _ = expconv_torch(t, c, fr, u / vp, dm)
    F0, _ = expconv_torch(t, c, fr, torch.zeros_like(f), dm)
    return (f * f / u)[:, None] * F + (f * PS / u)[:, None] * F0


def twocxm_torch(params, acq, delay_idx):
    import torch

    t, c, fr = _torch_parts(acq)
    f, PS, ve, vp = params[:, 0] / 100.0, params[:, 1], params[:, 2], params[:, 3]
    S = (f + PS) / vp + PS / ve
    P = f * PS / (vp * ve)
    Q = PS / ve + PS / vp
    D = torch.sqrt(torch.clamp(S * S - 4.0 * P, min=0.0))
    kp, km = 0.5 * (S + D), 0.5 * (S - D)
    A = (kp - Q) / D
    dm = _delay_min(params, delay_idx)
    Fp_, _ = expconv_torch(t, c, fr, kp, dm)
    Fm_, _ = expconv_torch(t, c, fr, km, dm)
    return f[:, None] * (A[:, None] * Fp_ + (1.0 - A)[:, None] * Fm_)


def aath_torch(params, acq, delay_idx):
    import torch

    t, c, fr = _torch_parts(acq)
    f, PS, ve, vp = params[:, 0] / 100.0, params[:, 1], params[:, 2], params[:, 3]
    E = -torch.expm1(-PS / f)
    dm = _delay_min(params, delay_idx)
    dc = dm + vp / f                                        # delay + capillary transit time Tc (min)
    zero = torch.zeros_like(f)
    P1, _ = expconv_torch(t, c, fr, zero, dm)
    P2, _ = expconv_torch(t, c, fr, zero, dc)
    Fk, _ = expconv_torch(t, c, fr, E * f / ve, dc)
    return f[:, None] * (P1 - P2) + (E * f)[:, None] * Fk
