"""The DCE pharmacokinetic models, declared: Tofts, extended Tofts, Patlak, 2CXM, 2CUM and AATH, with optional delay.

Every model predicts the tissue concentration C(t) (mM) at the frame times t (s) from the plasma
concentration Cp(t) (mM) of the arterial input function (AIF), known on its own time grid (finer
than the frames for a file or a population AIF; the frames for an ROI AIF): the convolution runs on
the union of both grids and is read at the frames (:func:`qmri.models.dce.convolution.acquisition`). Internally time runs in
minutes so that ``Ktrans``, ``PS`` and the rate constants are in 1/min; at the interface time is
in seconds. Conventions and units follow OSIPI CAPLEX and the OSIPI DCE code collection tests:

=========  ===============  =========================================================
name       unit             meaning
=========  ===============  =========================================================
Ktrans     1/min            volume transfer constant
ve         (fraction)       extravascular extracellular volume fraction
vp         (fraction)       plasma volume fraction
kep        1/min            Ktrans / ve (derived output of Tofts, extended Tofts and AATH)
Fp         mL/min/100mL     plasma flow
PS         1/min            permeability–surface area product per unit tissue volume
delay      s                arterial delay; positive when the tissue curve arrives after the AIF
Tc         s                capillary transit time vp / Fp (derived output of AATH)
=========  ===============  =========================================================

Models (``f = Fp/100`` in 1/min, ``⊛`` convolution from the first frame, ``τ = t - delay``):

* Tofts (Tofts & Kermode, MRM 1991;17:357; Tofts et al., JMRI 1999;10:223)::

      C(t) = Ktrans · Cp ⊛ exp(-kep t)(τ),                    kep = Ktrans / ve
* extended Tofts (Tofts 1997, JMRI 7:91)::  C(t) = vp · Cp(τ) + Ktrans · Cp ⊛ exp(-kep t)(τ)
* Patlak (Patlak et al., JCBFM 1983;3:1)::   C(t) = vp · Cp(τ) + Ktrans · ∫₀^τ Cp
* two-compartment exchange, 2CXM (Sourbron & Buckley, PMB 2011;56:R1 / MRM 2011;66:735)::

      C(t) = f · Cp ⊛ [A exp(-k₊ t) + (1 - A) exp(-k₋ t)](τ)

  with k± the eigenvalues of the exchange system, ``k₊ + k₋ = (f + PS)/vp + PS/ve``,
  ``k₊ k₋ = f PS / (vp ve)`` and ``A = (k₊ - PS/ve - PS/vp) / (k₊ - k₋)`` (so that the impulse
  response starts at f and integrates to vp + ve).
* two-compartment uptake, 2CUM (the 2CXM with ve → ∞; Sourbron & Buckley 2011)::

      C(t) = f · Cp ⊛ [(1 - E) exp(-k t) + E](τ),   k = (f + PS)/vp,   E = PS/(f + PS)
* adiabatic approximation to the tissue homogeneity model, AATH (St Lawrence & Lee, JCBFM
  1998;18:1365; Sourbron & Buckley, NMR Biomed 2013;26:1004)::

      C(t) = Cp ⊛ R(τ),   R(t) = f for 0 ≤ t < Tc,   R(t) = E f exp(-E f (t - Tc)/ve) for t ≥ Tc,

  with ``Tc = vp/f`` the capillary transit time and ``E = 1 - exp(-PS/f)`` the extraction
  fraction; derived outputs ``Ktrans = E f``, ``kep = Ktrans/ve`` and ``Tc`` (s). The response
  jumps at Tc; it is integrated exactly as ``f ∫_{τ-Tc}^{τ} Cp + E f (Cp ⊛ exp(-kep t))(τ - Tc)``,
  both exact for the piecewise-linear Cp, so the jump needs no finer grid.

Kernels: :mod:`qmri.models.dce.kernels` (Numba) and :mod:`qmri.models.dce.twins` (torch), on the
exact convolution of :mod:`qmri.models.dce.convolution`. Default bounds and starting values of the
OSIPI tests: Ktrans and PS 0–5 /min, ve and vp 0–1, Fp 0–200 mL/min/100mL, delay ±10 s (lower
bounds of ve, vp and Fp are kept slightly above 0 where a rate would divide by them).
"""

from __future__ import annotations

import numpy as np

from qmri.models.base import Parameter, SignalModel, register
from qmri.models.dce import kernels as K
from qmri.models.dce.convolution import acquisition, frame_count
from qmri.models.dce.twins import aath_torch, patlak_torch, tofts_torch, twocum_torch, twocxm_torch

#: PK models by command-line name.
MODEL_NAMES = ("tofts", "etm", "patlak", "2cxm", "2cum", "aath")
#: Default delay bounds (s), OSIPI code collection.
DELAY_BOUNDS = (-10.0, 10.0)


def example_aif(t):
    """A smooth bolus-like test input Cp(t) (mM) at times t (s): zero until 10 s, peak 8 mM at 12.4 s."""
    tm = np.maximum(np.asarray(t, float) - 10.0, 0.0) / 60.0
    return 8.0 * (tm / 0.04) * np.exp(1.0 - tm / 0.04) + 1.2 * (1.0 - np.exp(-tm / 0.1)) * np.exp(-0.2 * tm)


def _example_acquisition():
    # non-uniform frame times (s): dense at the bolus, sparse later; the AIF on its own 0.7 s grid
    t = np.concatenate([np.arange(0.0, 60.0, 2.0), 60.0 + np.cumsum(np.linspace(3.0, 9.0, 30))])
    ta = np.arange(0.0, t[-1] + 0.7, 0.7)
    return acquisition(t, example_aif(ta), aif_times=ta)


_ACQ_DOC = ("shape (5, n_points), one column per time point of the AIF's grid and the frames (see acquisition()): "
            "acq[0]: time in s (strictly increasing); acq[1]: plasma concentration Cp of the AIF in mM; acq[2]: time "
            "in min; acq[3]: slope of Cp per segment in mM/min; acq[4]: 1 for a frame (a measurement), 0 else")
_P = {
    "Ktrans": Parameter("Ktrans", "1/min", 0.0, 5.0, 0.1, "volume transfer constant"),
    "ve": Parameter("ve", "", 1e-3, 1.0, 0.2, "extravascular extracellular volume fraction"),
    "vp": Parameter("vp", "", 0.0, 1.0, 0.02, "plasma volume fraction"),
    "vp+": Parameter("vp", "", 1e-3, 1.0, 0.05, "plasma volume fraction"),
    "Fp": Parameter("Fp", "mL/min/100mL", 1e-2, 200.0, 20.0, "plasma flow"),
    "PS": Parameter("PS", "1/min", 0.0, 5.0, 0.05, "permeability-surface area product per unit tissue volume"),
    "delay": Parameter("delay", "s", DELAY_BOUNDS[0], DELAY_BOUNDS[1], 0.0,
                       "arterial delay, positive when the tissue curve arrives after the AIF"),
}
_REFS = {
    "tofts": "Tofts & Kermode, MRM 1991;17:357; Tofts et al., JMRI 1999;10:223",
    "etm": "Tofts, JMRI 1997;7:91 (extended Tofts)",
    "patlak": "Patlak, Blasberg & Fenstermacher, JCBFM 1983;3:1",
    "2cxm": "Sourbron & Buckley, PMB 2011;56:R1 and MRM 2011;66:735 (two-compartment exchange)",
    "2cum": "Sourbron & Buckley, PMB 2011;56:R1 (two-compartment uptake)",
    "aath": ("St Lawrence & Lee, JCBFM 1998;18:1365 (adiabatic approximation to the tissue homogeneity model); "
             "Sourbron & Buckley, NMR Biomed 2013;26:1004"),
}
_PARAMS = {
    "tofts": ("Ktrans", "ve"),
    "etm": ("Ktrans", "ve", "vp"),
    "patlak": ("Ktrans", "vp"),
    "2cxm": ("Fp", "PS", "ve", "vp+"),
    "2cum": ("Fp", "PS", "vp+"),
    "aath": ("Fp", "PS", "ve", "vp+"),
}
_KERNELS = {
    ("tofts", False): (K.tofts_signal, K.tofts_jacobian, K.tofts_signal_jacobian,
        lambda P, a, c=None: tofts_torch(P, a, False, None)),
    ("tofts", True): (K.tofts_delay_signal, K.tofts_delay_jacobian, K.tofts_delay_signal_jacobian,
        lambda P, a, c=None: tofts_torch(P, a, False, 2)),
    ("etm", False): (K.etm_signal, K.etm_jacobian, K.etm_signal_jacobian,
        lambda P, a, c=None: tofts_torch(P, a, True, None)),
    ("etm", True): (K.etm_delay_signal, K.etm_delay_jacobian, K.etm_delay_signal_jacobian,
        lambda P, a, c=None: tofts_torch(P, a, True, 3)),
    ("patlak", False): (K.patlak_signal, K.patlak_jacobian, K.patlak_signal_jacobian,
        lambda P, a, c=None: patlak_torch(P, a, None)),
    ("patlak", True): (K.patlak_delay_signal, K.patlak_delay_jacobian, K.patlak_delay_signal_jacobian,
        lambda P, a, c=None: patlak_torch(P, a, 2)),
    ("2cxm", False): (K.twocxm_signal, K.twocxm_jacobian, K.twocxm_signal_jacobian,
        lambda P, a, c=None: twocxm_torch(P, a, None)),
    ("2cxm", True): (K.twocxm_delay_signal, K.twocxm_delay_jacobian, K.twocxm_delay_signal_jacobian,
        lambda P, a, c=None: twocxm_torch(P, a, 4)),
    ("2cum", False): (K.twocum_signal, K.twocum_jacobian, K.twocum_signal_jacobian,
        lambda P, a, c=None: twocum_torch(P, a, None)),
    ("2cum", True): (K.twocum_delay_signal, K.twocum_delay_jacobian, K.twocum_delay_signal_jacobian,
        lambda P, a, c=None: twocum_torch(P, a, 3)),
    ("aath", False): (K.aath_signal, K.aath_jacobian, K.aath_signal_jacobian,
        lambda P, a, c=None: aath_torch(P, a, None)),
    ("aath", True): (K.aath_delay_signal, K.aath_delay_jacobian, K.aath_delay_signal_jacobian,
        lambda P, a, c=None: aath_torch(P, a, 4)),
}

#: Declared DCE signal models by (model name, fit_delay).
DCE_MODELS: dict[tuple[str, bool], SignalModel] = {}
for (_name, _delay), (_sig, _jac, _sj, _torch) in _KERNELS.items():
    _params = tuple(_P[k] for k in _PARAMS[_name]) + ((_P["delay"],) if _delay else ())
    DCE_MODELS[(_name, _delay)] = register(SignalModel(
        name=f"dce_{_name}" + ("_delay" if _delay else ""),
        parameters=_params,
        signal=_sig,
        jacobian=_jac,
        signal_jacobian=_sj,
        torch_signal=_torch,
        acquisition_doc=_ACQ_DOC,
        example_acquisition=_example_acquisition,
        measurements=frame_count,
        reference=_REFS[_name] + "; exact recursive convolution for piecewise-linear Cp",
    ))
