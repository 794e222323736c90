"""The demo and command-line facets of the models (:class:`qmri.models.facets.Demo`,
:class:`qmri.models.facets.CommandText`): attached to every model class, bound to what they are read
through, declaring what the class attributes they replace declared."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

import qmri
from qmri.models import commands
from qmri.models.facets import CommandText, Demo
from qmri.models.model import MODEL_IDS, Model

#: What each model declared before the facets (``phantom_options`` names, ``demo_parameters``,
#: ``demo_phantom``, ``demo_columns`` keys), read from the class attributes the facet replaces.
DEMO = {
    "DCE": ((), ("Ktrans", "ve", "vp"), {"snr": 20.0, "block": (10, 10, 1)}, ()),
    "DiffusionModel": (("bvals",), (), {}, ()),
    "ADC": (("bvals",), ("ADC",), {"snr": 30.0, "block": (16, 16, 4)}, ()),
    "DKI": ((), ("MD", "FA", "MK", "MKT"), {"snr": 30.0, "block": (16, 16, 4)}, ("K<0 %",)),
    "TraceDKI": (("bvals",), (), {}, ()),
    "IVIM": (("bvals",), ("f", "D", "Dstar"), {"snr": 30.0, "block": (16, 16, 4)}, ()),
    "IVIMKurtosis": (("bvals",), ("f", "D", "Dstar", "K"), {"block": (16, 16, 4)}, ()),
    "StretchedExponential": (("bvals",), ("DDC", "alpha"), {"snr": 50.0, "block": (16, 16, 4)}, ()),
    "VFA": ((), (), {}, ()),
}
#: ``summary`` and ``description`` of each model with a command, before the facet.
CLI = {
    "DCE": ("fit a pharmacokinetic model (Tofts, extended Tofts, Patlak, 2CXM, 2CUM, AATH) to a DCE series",
        ("Fit a DCE-MRI pharmacokinetic model voxel by voxel. Time in s; Ktrans, kep and PS in 1/min; Fp "
         "in mL/min/100mL; ve and vp fractions; delay and Tc in s (delay positive when the tissue arrives "
         "after the AIF).")),
    "ADC": ("fit the mono-exponential ADC (S0, ADC) to a diffusion series",
        ("Fit S = S0 exp(-b ADC) voxel by voxel: log-linear weighted least squares (wls, default) or "
         "bounded Levenberg-Marquardt (lsq). b in s/mm2, ADC in mm2/s; use --bmin 200 for an ADC free of "
         "perfusion.")),
    "DKI": ("fit diffusion kurtosis (full tensor, or trace/powder DKI for body imaging)",
        ("Fit DKI voxel by voxel. Full tensor (S0, MD, AD, RD, FA, MK, AK, RK, MKT, KFA) when a .bvec with "
         ">= 15 directions is given and --trace is not set; otherwise trace DKI S = S0 exp(-b D + b^2 D^2 "
         "K/6) on direction-averaged images (S0, D, K), fitted by bounded LM. b in s/mm2, diffusivities in "
         "mm2/s, kurtosis unitless.")),
    "IVIM": ("fit IVIM (S0, f, D, Dstar) to a diffusion series",
        ("Fit the bi-exponential IVIM model voxel by voxel. D and Dstar in mm2/s, b in s/mm2, f a "
         "fraction.")),
    "IVIMKurtosis": ("fit IVIM-kurtosis (S0, f, D, Dstar, K) to a diffusion series",
        ("Fit S = S0 (f exp(-b Dstar) + (1 - f) exp(-b D + b^2 D^2 K / 6)) voxel by voxel (IVIM with a "
         "kurtosis term, Lu et al. 2012), for b up to 2000 s/mm2. D and Dstar in mm2/s, b in s/mm2, f a "
         "fraction, K dimensionless.")),
    "StretchedExponential": ("fit the stretched exponential (S0, DDC, alpha) to a diffusion series",
        ("Fit S = S0 exp(-(b DDC)^alpha) voxel by voxel (Bennett et al. 2003) by bounded "
         "Levenberg-Marquardt. b in s/mm2, DDC in mm2/s, alpha in (0, 1].")),
    "VFA": ("map T1 (s) and M0 from variable-flip-angle SPGR images",
        ("Fit the spoiled gradient-echo signal to a variable-flip-angle series voxel by voxel (DESPOT1 "
         "line fit or bounded Levenberg-Marquardt from it). T1 in s, flip angles in degrees, TR in s. "
         "Writes T1, M0 and the fit quality maps.")),
}


def models() -> dict:
    """Every model class qmri registers, by class name (every model module imported; models that tests
    register from elsewhere, the guide's, left out)."""
    commands()
    importlib.import_module("qmri.models.diffusion.dki.trace")  # a model without a command of its own
    package = Path(qmri.__file__).parent

    def in_qmri(cls) -> bool:
        module = sys.modules.get(cls.__module__)
        return module is not None and Path(module.__file__).is_relative_to(package)

    return {cls.__name__: cls for cls in set(MODEL_IDS.values()) if in_qmri(cls)}


def test_every_model_is_listed():
    assert set(models()) == set(DEMO)
    assert {cls.__name__ for cls in commands().values()} == set(CLI)


@pytest.mark.parametrize("name", sorted(DEMO))
def test_demo_facet_is_bound_to_the_class_and_declares_what_it_did(name):
    cls = models()[name]
    demo = cls.demo
    assert isinstance(demo, Demo) and demo.owner is cls and demo.model is None
    options, parameters, phantom, columns = DEMO[name]
    assert tuple(o.name for o in demo.options) == options
    assert demo.parameters == parameters
    assert demo.phantom == phantom
    assert tuple(demo.columns) == columns


@pytest.mark.parametrize("name", sorted(DEMO))
def test_cli_facet_is_bound_to_the_class_and_declares_what_it_did(name):
    cls = models()[name]
    cli = cls.cli
    assert isinstance(cli, CommandText) and cli.owner is cls and cli.model is None
    assert (cli.summary, cli.description) == CLI.get(name, ("", ""))


@pytest.mark.parametrize("command", ["ivim", "ivimk", "adc", "stretched", "dki", "dce"])
def test_facets_read_through_a_model_are_bound_to_it(command):
    cls = commands()[command]
    model = cls.demo.cases(cls.phantom(snr=np.inf, block=(1, 1, 1)))[0][1]
    for facet in (model.demo, model.cli):
        assert facet.model is model and facet.owner is type(model)
    assert model.demo == type(model).demo  # the same declaration, only bound otherwise


def test_default_cases_fit_every_method_of_the_class_they_are_read_through():
    from qmri.models.diffusion.ivimk import IVIMKurtosis

    ph = IVIMKurtosis.phantom(snr=np.inf, block=(1, 1, 1))
    cases = IVIMKurtosis.demo.cases(ph)
    assert [label for label, *_ in cases] == list(IVIMKurtosis.methods)
    assert all(type(model) is IVIMKurtosis and method == label for label, model, _, _, method in cases)


def test_dce_demo_fits_tofts_where_there_is_no_plasma_volume_and_extended_tofts_everywhere():
    from qmri.models.dce import DCE

    ph = DCE.phantom(snr=np.inf, block=(2, 2, 1))
    (tofts, m1, _, mask1, _), (etm, m2, _, mask2, _) = DCE.demo.cases(ph)
    assert (tofts, m1.model, etm, m2.model) == ("tofts", "tofts", "etm", "etm")
    assert mask1.sum() < mask2.sum() == ph.mask.sum() and not (ph.truth["vp"][mask1] != 0).any()


def test_the_old_declaration_slots_are_gone():
    old = ("summary", "description", "phantom_options", "demo_parameters", "demo_phantom", "demo_columns",
           "demo_cases", "demo_extra")
    for cls in (Model, *models().values()):
        assert not [name for name in old if hasattr(cls, name)], cls.__name__


def test_command_and_options_stay_on_the_class():
    for cls in commands().values():
        assert cls.__dict__.get("command") and isinstance(cls.options, tuple)
