"""Diffusion models fitted to b-value series: IVIM, ADC, stretched exponential, DKI (full tensor and trace).

Shared pieces (b-value and b-vector checks, shells, normalisation, the :class:`DiffusionModel`
base) are in :mod:`qmri.models.diffusion.acquisition`; each model has one module.
"""
