"""The network facet (``model.network``, :class:`qmri.models.network.Network`): bound to every
registered model, the families' overrides, and no network hook left on ``Model`` itself."""

from __future__ import annotations

import numpy as np
import pytest

from qmri.errors import QMRIInputError
from qmri.fitting.net.weights import builtin_paths
from qmri.models import DCE, DKI, IVIM, TraceDKI, commands
from qmri.models.dce.network import N_AIFS
from qmri.models.model import Model
from qmri.models.network import Network

from test_model_settings import MODEL_NAMES, _dce, _dwi, case

OLD_MEMBERS = ("training_noise", "network_bounds", "network_channels", "network_training_models",
               "sample_network_parameters", "protocol", "pretrained", "pretrained_recipes")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_has_its_network_facet_bound(name):
    model = case(name)
    facet = model.network
    assert isinstance(facet, Network)
    assert facet.model is model and facet.owner is type(model)
    assert type(model).network.model is None and type(model).network.owner is type(model)
    other = case(name)
    assert other.network.model is other and model.network.model is model  # one bound copy per read
    assert facet.noise in ("rician", "gaussian")
    lo, hi = facet.bounds()
    assert np.shape(lo) == np.shape(hi) == (model.spec.n_params,) and np.all(np.asarray(lo) <= np.asarray(hi))
    assert facet.protocol() and all(isinstance(np.asarray(v), np.ndarray) for v in facet.protocol().values())
    for variant in facet.training_models(np.random.default_rng(0)):
        assert variant.network.model is variant and variant.spec.names == model.spec.names


@pytest.mark.parametrize("member", OLD_MEMBERS)
def test_model_no_longer_has_the_network_hooks(member):
    assert not hasattr(Model, member)
    assert [cls.__name__ for cls in (*commands().values(), TraceDKI) if hasattr(cls, member)] == []


def test_a_bad_noise_is_refused_at_declaration():
    with pytest.raises(ValueError, match="noise must be one of"):
        Network(noise="poisson")


def test_dce_facet_reads_the_aif_and_trains_with_gaussian_noise():
    t, aif, ta = _dce()
    model = DCE(t, aif, "etm", aif_times=ta)
    facet = model.network
    assert type(facet).__name__ == "DCENetwork" and facet.noise == "gaussian"
    ch = facet.channels()
    assert ch.shape == (2, t.size)
    np.testing.assert_array_equal(ch[0], np.interp(t, ta, aif))  # the AIF on the frames
    np.testing.assert_array_equal(ch[1], t / 60.0)  # frame times in min
    assert list(facet.protocol()) == ["frame times (s)"] and np.array_equal(facet.protocol()["frame times (s)"], t)
    variants = facet.training_models(np.random.default_rng(0))
    assert len(variants) == N_AIFS and np.array_equal(variants[0].aif, model.aif)
    assert all(np.array_equal(v.t, t) and np.array_equal(v.lower, model.lower) for v in variants)
    P = facet.sample(500, np.random.default_rng(0))
    assert P.shape == (500, model.spec.n_params) and np.all((P >= model.lower) & (P <= model.upper))
    j = model.spec.names.index("vp")
    assert P[:, j].max() <= model.pk.prior["vp"][1]  # the PK model's declared tissue range, not the bounds


def test_dki_facets_override_ranges_draws_protocol_and_recipes():
    b, g = _dwi()
    model = DKI(b, g)
    facet = model.network
    lo, hi = facet.bounds()
    assert lo.shape == (22,) and np.all(np.isfinite(lo) & np.isfinite(hi))
    assert not np.all(np.isfinite(model.lower) & np.isfinite(model.upper))  # the model's own bounds are open
    P = facet.sample(20, np.random.default_rng(0))
    assert P.shape == (20, 22) and np.all((P >= lo) & (P <= hi))
    with pytest.raises(QMRIInputError, match="prior over the coefficients is not supported"):
        facet.sample(5, np.random.default_rng(0), prior={"S0": (1.0, 2.0)})
    assert set(facet.protocol()) == {"b-values (s/mm2)", "gradient directions (DKI design, ms/um2)"}
    recipes = DKI.network.recipes()
    assert list(recipes) == ["dki-trace", "dki"]
    assert recipes["dki-trace"][1] == DKI.network.pretrained_trace and recipes["dki"][1] == DKI.network.pretrained
    trace = TraceDKI(b, bvecs=g)
    shells, = trace.network.training_models(np.random.default_rng(0))
    assert isinstance(shells, TraceDKI) and not shells.averaged and np.array_equal(shells.bvals, trace.bvals)
    assert np.array_equal(shells.lower, trace.lower) and np.array_equal(shells.upper, trace.upper)
    plain = TraceDKI([0, 500, 1000, 2000])
    assert plain.network.training_models(None) == [plain]


def test_diffusion_facets_bind_networks_to_the_b_values():
    model = IVIM([0, 10, 50, 100, 200, 400, 800])
    assert type(model.network).__name__ == "DiffusionNetwork" and model.network.noise == "rician"
    assert list(model.network.protocol()) == ["b-values (s/mm2)"]
    assert np.array_equal(model.network.protocol()["b-values (s/mm2)"], model.bvals)
    assert model.network.bounds() == (model.lower, model.upper)


def test_the_declared_recipes_are_the_shipped_networks():
    """``cls.network.recipes()`` over the commands names exactly the files in
    ``qmri/fitting/net/pretrained`` (tools/make_pretrained.py regenerates them from it)."""
    names = [name for cls in commands().values() for name in cls.network.recipes()]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(p.stem for p in builtin_paths())
    assert commands()["t1"].network.recipes() == {}  # VFA ships none
    make, kw = IVIM.network.recipes()["ivim"]
    assert kw == dict(IVIM.network.pretrained) and type(make()) is IVIM
