"""Every model records its constructor settings and is rebuilt from its provenance with all of them.

The conformance test builds every registered model class with settings other than the defaults
(bounds, thresholds and other keywords, a covariate where one is declared), sends its provenance
through JSON and rebuilds it with ``from_provenance``: the rebuilt model must be the same model (every
attribute, hence bounds, acquisition and keywords) and give the same signal. Sidecars written before
the settings were recorded (``tests/data/sidecars_before_settings.json``, one fit per family) must
still rebuild their model, with the acquisition and bounds they record.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qmri import io
from qmri.errors import QMRIInputError
from qmri.fitting.lm import LMOptions
from qmri.maps import _FIXED_KEYS, _camel, _snake
from qmri.models import TraceDKI, commands
from qmri.models.model import model_class

OLD_SIDECARS = Path(__file__).parent / "data" / "sidecars_before_settings.json"


def _directions(n):
    """``n`` unit vectors spread over the sphere (a Fibonacci lattice)."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5 ** 0.5) * i
    r = np.sqrt(1 - z ** 2)
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


def _dwi():
    g = _directions(30)
    bvals = np.r_[0.0, 0.0, np.full(30, 1000.0), np.full(30, 2000.0)]
    return bvals, np.vstack([[1.0, 0, 0], [1.0, 0, 0], g, g])


def _dce():
    from qmri.models.dce.models import example_aif

    ta = np.arange(0.0, 241.0, 0.5)
    return np.arange(0.0, 240.0, 4.0), example_aif(ta), ta


IVIM_B = [0, 10, 20, 50, 100, 200, 300, 400, 600, 800, 1000]


def case(name):
    """The model class called ``name`` built with settings other than its defaults."""
    cls = model_class(name)
    if name == "IVIM":
        return cls(np.array(IVIM_B, dtype=float), bounds={"f": (0.0, 0.5), "Dstar": (0.004, 0.08)}, threshold=300,
                   preset="liver", initial_guess={"D": 0.0012}, b0_threshold=5.0, lm_options=LMOptions(max_iter=50))
    if name == "IVIMKurtosis":
        return cls(np.array(IVIM_B + [1500, 2000], dtype=float), bounds={"K": (0.0, 2.0), "f": (0.0, 0.4)},
                   threshold=400, initial_guess={"K": 0.8}, lm_options=LMOptions(max_iter=80))
    if name == "ADC":
        return cls([0, 100, 400, 800], bounds={"ADC": (0.0, 0.004)}, initial_guess={"ADC": 0.0008})
    if name == "StretchedExponential":
        return cls([0, 200, 500, 1000, 1500, 2000], bounds={"alpha": (0.2, 1.0), "DDC": (1e-5, 0.004)},
                   lm_options=LMOptions(xtol=1e-9, ftol=1e-10))
    if name == "DKI":
        b, g = _dwi()
        return cls(b, g, min_kurtosis=-0.5, max_kurtosis=5.0, min_signal=1e-3, wls_iter=2, b0_threshold=20.0)
    if name == "TraceDKI":
        b, g = _dwi()
        return cls(b, bvecs=g, bounds={"K": (0.0, 2.0)}, b0_threshold=20.0)
    if name == "VFA":
        return cls([2, 5, 10, 15], tr=[0.005, 0.005, 0.006, 0.006], b1=0.9, bounds={"T1": (0.1, 5.0)})
    if name == "DCE":
        t, aif, ta = _dce()
        return cls(t, aif, "etm", fit_delay=True, bounds={"Ktrans": (0.0, 2.0), "delay": (-5.0, 5.0)},
                   initial_guess={"ve": 0.3}, delay_step=0.5, aif_times=ta, aif_rtol=1e-3)
    raise AssertionError(f"{name}: add a case with settings other than the defaults to tests/test_model_settings.py")


MODEL_NAMES = sorted({cls.__name__ for cls in commands().values()} | {TraceDKI.__name__})


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.shape(a) == np.shape(b) and np.array_equal(a, b, equal_nan=True)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _round_trip(model):
    """``from_provenance`` of the model's provenance sent through JSON with sidecar key names, as
    the maps' sidecars carry it."""
    text = json.dumps({_camel(k): v for k, v in model.provenance().items()})
    prov = {_snake(k): v for k, v in json.loads(text).items()}
    return type(model).from_provenance(prov)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_model_is_rebuilt_from_its_provenance_with_every_setting(name):
    model = case(name)
    assert model.bounds_set() or name == "DKI"  # not the defaults (full-tensor DKI takes no bounds)
    settings = model.settings()
    json.dumps(settings, allow_nan=False)  # plain JSON values
    rebuilt = _round_trip(model)
    assert type(rebuilt) is type(model)
    assert rebuilt.settings() == settings
    attributes = {k: v for k, v in vars(model).items() if k != "_settings"}
    assert attributes.keys() == {k for k in vars(rebuilt) if k != "_settings"}
    different = [k for k, v in attributes.items() if not _same(v, getattr(rebuilt, k))]
    assert not different, f"{name}: rebuilt with other {', '.join(different)}"
    rng = np.random.default_rng(3)
    lo, hi = model.network.bounds()
    open_ended = {n: (0.5, 2.0) for n, a, b in zip(model.spec.names, lo, hi) if not np.isfinite(b - a)}  # VFA M0
    P = model.network.sample(20, rng, prior=open_ended)
    C = model.covariate_maps((20,))
    assert np.array_equal(model.spec.evaluate(P, model.acq, C), rebuilt.spec.evaluate(P, rebuilt.acq, C))


def test_ivim_and_vfa_keep_bounds_threshold_and_b1():
    ivim = _round_trip(case("IVIM"))
    assert ivim.threshold == 300.0 and ivim.preset == "liver" and ivim.b0_threshold == 5.0
    j = ivim.spec.names.index("f")
    assert (ivim.lower[j], ivim.upper[j]) == (0.0, 0.5)
    assert ivim.lm_options == LMOptions(max_iter=50)
    vfa = _round_trip(case("VFA"))
    assert (vfa.lower[1], vfa.upper[1]) == (0.1, 5.0) and float(vfa.b1) == 0.9
    assert np.array_equal(vfa.tr, [0.005, 0.005, 0.006, 0.006])


def test_settings_name_every_constructor_argument_with_its_value():
    model = case("ADC")
    assert model.settings() == {"bvals": [0, 100, 400, 800], "bounds": {"ADC": [0.0, 0.004]},
                                "initial_guess": {"ADC": 0.0008}, "lm_options": None}
    assert model.provenance()["model_settings"] == model.settings()


def test_a_b1_map_is_not_copied_into_the_settings():
    vfa = model_class("VFA")([2, 5, 10, 15], tr=0.005, b1=np.full((4, 4, 2), 0.95))
    assert vfa.settings()["b1"] is None
    with pytest.raises(QMRIInputError, match="B1 map None is not found"):
        vfa.from_provenance(vfa.provenance())  # a map comes back from its file (b1_map), which this has not


def test_settings_are_those_of_the_construction_not_of_later_changes_to_its_arguments():
    b = np.array([0.0, 100, 400, 800])
    model = model_class("ADC")(b)
    b[1] = 50.0
    assert model.settings()["bvals"] == [0.0, 100.0, 400.0, 800.0]
    model.settings()["bvals"][1] = 7.0
    assert model.settings()["bvals"][1] == 100.0


def test_settings_another_version_wrote_or_edited_ones_are_one_line_errors():
    prov = case("ADC").provenance()
    prov["model_settings"]["smoothing"] = 2.0
    with pytest.raises(QMRIInputError, match="settings this version does not know: smoothing"):
        model_class("ADC").from_provenance(prov)
    prov = case("IVIM").provenance()
    prov["model_settings"]["lm_options"] = {"max_iterations": 5}
    with pytest.raises(QMRIInputError, match="IVIM cannot be rebuilt from what its sidecars record: TypeError"):
        model_class("IVIM").from_provenance(prov)


def _old_sidecars():
    return json.loads(OLD_SIDECARS.read_text())["sidecars"]


@pytest.mark.parametrize("label", sorted(_old_sidecars()))
def test_sidecars_written_before_the_settings_still_rebuild_their_model(label):
    side = _old_sidecars()[label]["sidecar"]
    prov = {_snake(k): v for k, v in side.items() if k not in _FIXED_KEYS}
    assert "model_settings" not in prov
    model = model_class(prov["model"]).from_provenance(prov)
    assert type(model).__name__ == prov["model"]
    now = json.loads(io.json_text(model.provenance()))  # as sidecars write it (inf as null)
    if "bounds" not in prov:  # the fit's method applied no bounds: its sidecars leave them out
        now = {k: v for k, v in now.items() if k not in ("bounds", "bounds_note")}
    # the acquisition and the bounds (and every other fact the model records) as the sidecar recorded them
    for key, value in now.items():
        if key == "model_settings":
            continue
        if key == "bvecs":  # the recorded unit vectors, normalised again, move by an ulp at most
            np.testing.assert_allclose(value, prov[key], rtol=0, atol=4e-16)
        else:
            assert _same(value, prov[key]), f"{label}: {key} {value} != {prov[key]}"
    # no key renamed: every key the model records now but model_settings was in the old sidecar
    assert {_camel(k) for k in now} - set(side) <= {"ModelSettings"}
    if "bounds" in prov:
        assert model.bounds_set()  # each fixture's fit set some bounds (the fixtures' commands)
    if label == "ivim":
        assert model.threshold == 300.0


def test_maps_saved_and_loaded_rebuild_the_model_with_its_settings(tmp_path):
    from qmri.maps import ParameterMaps

    model = case("IVIM")
    truth = {"S0": 1000.0, "f": np.array([0.1, 0.2, 0.3]), "D": 0.001, "Dstar": 0.03}
    maps = model.fit(model.signal(truth), method="segmented")
    maps.save(tmp_path / "maps")
    prov = ParameterMaps.load(tmp_path / "maps").provenance
    rebuilt = model_class(prov["model"]).from_provenance(prov)
    assert rebuilt.settings() == model.settings()
    assert rebuilt.threshold == 300.0 and (rebuilt.lower[1], rebuilt.upper[1]) == (0.0, 0.5)
    assert "bvals" in prov and "threshold" in prov  # the keys sidecars had before stay


# ---------------------------------------------------------------------------------------------
# Stable ids: the sidecars name the model by an id that outlives its class name
# ---------------------------------------------------------------------------------------------
def _classes():
    return {**{cls.__name__: cls for cls in commands().values()}, TraceDKI.__name__: TraceDKI}


def test_every_model_has_one_stable_id_that_finds_its_class():
    classes = _classes()
    ids = [cls.model_id for cls in classes.values()]
    assert len(set(ids)) == len(ids), ids
    for name, cls in classes.items():
        assert model_class(cls.model_id) is cls and model_class(name) is cls
    # the ids are the BIDS model- labels files had before ids were declared (the class name in lower case)
    assert {cls.model_id for cls in classes.values()} == {name.lower() for name in classes}


def test_sidecars_record_the_id_and_a_renamed_class_still_loads(tmp_path):
    from qmri.maps import ParameterMaps
    from qmri.models.model import MODEL_IDS

    model = case("IVIM")
    maps = model.fit(model.signal({"S0": 1000.0, "f": np.array([0.1, 0.2]), "D": 0.001, "Dstar": 0.03}))
    maps.save(tmp_path / "maps")
    side = json.loads(next((tmp_path / "maps").glob("*f.json")).read_text())
    assert side["ModelId"] == "ivim" and side["Model"] == "IVIM"
    prov = ParameterMaps.load(tmp_path / "maps").provenance
    prov["model"] = "IVIMRenamedSince"  # a class renamed after the fit: the id still finds it
    assert model_class(prov["model_id"]) is type(model)
    with pytest.raises(QMRIInputError, match="unknown model 'IVIMRenamedSince'"):
        model_class(prov["model"])
    saved = dict(MODEL_IDS)
    try:
        class Successor(type(model)):  # a model whose old class name its sidecars recorded
            model_id = "successor"
            former_names = ("IVIMRenamedSince",)

        assert model_class("IVIMRenamedSince") is Successor and model_class("successor") is Successor
    finally:
        MODEL_IDS.clear()
        MODEL_IDS.update(saved)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_is_bound_by_the_one_base_constructor(name, monkeypatch):
    from qmri.models.model import Model

    calls = []
    base = Model.__init__

    def counting(self, spec, acq, **kwargs):
        calls.append((type(self).__name__, spec.name))
        base(self, spec, acq, **kwargs)

    monkeypatch.setattr(Model, "__init__", counting)
    model = case(name)
    assert calls == [(name, model.spec.name)]  # once, with the declaration the model fits
    assert model.acq.flags.c_contiguous and model.acq.dtype == np.float64
    assert model.lower.shape == model.upper.shape == model.initial.shape == (model.spec.n_params,)
    assert np.all((model.initial >= model.lower) & (model.initial <= model.upper))
    assert isinstance(model.covariates, dict)
