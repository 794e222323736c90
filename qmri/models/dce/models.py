"""The DCE pharmacokinetic models as signal declarations, with and without a fitted delay.

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

The models, one module each with its equation, kernels, torch twin, linear form and sources, are
declared in :mod:`qmri.models.dce.pk` (Tofts, extended Tofts, Patlak, 2CXM, 2CUM, AATH); each is
bound, with and without a fitted delay, to a :class:`~qmri.models.base.SignalModel`
(:data:`DCE_MODELS`, keyed by ``(name, fit_delay)``), on the exact convolution of :mod:`qmri.models.dce.convolution`. Default
bounds and starting values of the OSIPI tests: Ktrans and PS 0–5 /min, ve and vp 0–1, Fp 0–200
mL/min/100mL, delay ±10 s (lower bounds of ve, vp and Fp are kept slightly above 0 where a rate
would divide by them; :data:`qmri.models.dce.pk.PARAMETERS`).
"""

from __future__ import annotations

from qmri.models.dce.pk import DCE_MODELS, DELAY_BOUNDS, PK_MODELS, example_aif

#: PK models by command-line name, in display order (the declarations: :mod:`qmri.models.dce.pk`).
MODEL_NAMES = tuple(PK_MODELS)
__all__ = ["DCE_MODELS", "DELAY_BOUNDS", "MODEL_NAMES", "example_aif"]
