"""Extended Tofts (Tofts, JMRI 1997;7:91)::

    C(t) = vp · Cp(τ) + Ktrans · Cp ⊛ exp(-kep t)(τ),   kep = Ktrans / ve,   τ = t - delay

Linear form (Murase, MRM 2004;51:858): ``C = -kep ∫C + vp Cp + (Ktrans + kep vp) ∫Cp``. Derived
output ``kep`` (1/min). Kernels: those of Tofts (:mod:`qmri.models.dce.pk.tofts`) with ``vp``.
"""

from __future__ import annotations

from qmri.jit import njit
from qmri.models.dce.pk import LinearForm, PKModel, tissue_prior
from qmri.models.dce.pk.tofts import kep, tofts_family_jacobian, tofts_family_signal, tofts_twin

@njit(cache=True)
def etm_signal(p, acq, cov, out):
    """Extended Tofts; p = (Ktrans 1/min, ve, vp)."""
    tofts_family_signal(p[0], p[1], p[2], 0.0, acq, out)


@njit(cache=True)
def etm_jacobian(p, acq, cov, J):
    tofts_family_jacobian(p[0], p[1], p[2], 0.0, acq, J, True, False, J[:, 0], False)


@njit(cache=True)
def etm_signal_jacobian(p, acq, cov, out, J):
    tofts_family_jacobian(p[0], p[1], p[2], 0.0, acq, J, True, False, out, True)


@njit(cache=True)
def etm_delay_signal(p, acq, cov, out):
    """Extended Tofts with delay; p = (Ktrans 1/min, ve, vp, delay s)."""
    tofts_family_signal(p[0], p[1], p[2], p[3], acq, out)


@njit(cache=True)
def etm_delay_jacobian(p, acq, cov, J):
    tofts_family_jacobian(p[0], p[1], p[2], p[3], acq, J, True, True, J[:, 0], False)


@njit(cache=True)
def etm_delay_signal_jacobian(p, acq, cov, out, J):
    tofts_family_jacobian(p[0], p[1], p[2], p[3], acq, J, True, True, out, True)


def _from_linear(beta):
    kep_, vp, c = beta[:, 0], beta[:, 1], beta[:, 2]
    Kt = c - kep_ * vp
    return [Kt, Kt / kep_, vp]


MODEL = PKModel(
    name="etm",
    label="extended Tofts",
    title="extended Tofts",
    parameters=("Ktrans", "ve", "vp"),
    kernels=(etm_signal, etm_jacobian, etm_signal_jacobian),
    delay_kernels=(etm_delay_signal, etm_delay_jacobian, etm_delay_signal_jacobian),
    torch_signal=lambda P, a, d: tofts_twin(P, a, True, d),
    reference="Tofts, JMRI 1997;7:91 (extended Tofts)",
    linear=LinearForm(1, (0, 1), _from_linear, "Murase, MRM 2004;51:858"),
    derived={"kep": ("1/min", kep)},
    prior=tissue_prior("Ktrans", "ve", "vp"),
    ve_requires_ktrans=True,
    pretrained=dict(n=100_000, snr="5:100", ensemble=1),
)
