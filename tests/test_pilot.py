"""Networks trained for a fit on signals simulated from a least-squares pilot fit (``--training pilot``)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from qmri.errors import QMRIInputError  # noqa: E402
from qmri.fitting.net import pilot  # noqa: E402
from qmri.fitting.net.weights import Trained  # noqa: E402
from qmri.models import DCE, IVIM  # noqa: E402
from qmri.models.dce.phantom import dce_phantom  # noqa: E402
from qmri.simulate import nrmse_bias  # noqa: E402


@pytest.fixture
def few_signals(monkeypatch):
    """20,000 simulated signals instead of 200,000: the same training, ten times cheaper."""
    monkeypatch.setattr(pilot, "PILOT_SIGNALS", 20_000)


def tofts_case(snr=10.0):
    """Tofts on the vp = 0 patches of the DCE phantom, 4 s frames (subsampled after the conversion,
    so that the baseline stays the 10 pre-contrast frames)."""
    ph = dce_phantom(snr=snr, block=(8, 8, 1), seed=int(snr))
    t = np.asarray(ph.acquisition["times"])[::2]
    model = DCE(t, np.asarray(ph.acquisition["aif"]), "tofts", aif_times=np.asarray(ph.acquisition["aif_times"]))
    conc = np.ascontiguousarray(ph.images["dce_conc"][..., ::2])
    return ph, model, conc, ph.mask & (ph.truth["vp"] == 0)


def test_jitter_is_log_normal_for_positive_parameters_and_additive_for_a_delay():
    rng = np.random.default_rng(0)
    lo, hi = np.array([0.0, 1e-3, -10.0]), np.array([5.0, 1.0, 10.0])
    P = np.tile([0.2, 0.3, 2.0], (50_000, 1))
    J = pilot.jitter(P, lo, hi, rng)
    assert np.all((J >= lo) & (J <= hi))
    assert np.std(np.log(J[:, 0] / 0.2)) == pytest.approx(pilot.JITTER, rel=0.03)
    assert np.std(np.log(J[:, 1] / 0.3)) == pytest.approx(pilot.JITTER, rel=0.03)
    assert np.std(J[:, 2] - 2.0) == pytest.approx(1.0, rel=0.03)      # JITTER / 2 × 20 s
    assert np.all(pilot.jitter(np.zeros((10, 3)), lo, hi, rng)[:, :2] == [0.0, 1e-3])  # 0 stays 0, clipped


def test_dce_dnn_trains_on_a_pilot_fit_and_estimates_ve_better_than_lsq(few_signals):
    ph, model, conc, mask = tofts_case()
    maps = model.fit(conc, mask=mask, method="dnn", epochs=30)   # DCE's default: --training pilot
    rec = maps.provenance["network_training"]
    assert (rec["mode"], rec["reads"], rec["signals"]) == ("pilot", "lsq", 20_000)
    assert rec["pilot_voxels"] == int(mask.sum()) and np.all(maps["status"][mask] == 0)
    lsq = model.fit(conc, mask=mask, method="lsq")
    every = np.ones(int(mask.sum()), bool)
    err = {m: {k: nrmse_bias(np.asarray(r[k])[mask], ph.truth[k][mask], every)[0] for k in ("Ktrans", "ve")}
           for m, r in (("dnn", maps), ("lsq", lsq))}
    assert err["dnn"]["ve"] < 0.8 * err["lsq"]["ve"], err
    assert err["dnn"]["Ktrans"] < 1.1 * err["lsq"]["Ktrans"], err


def test_pilot_networks_read_each_voxels_lsq_estimate_and_load_from_a_file(few_signals, tmp_path):
    ph, model, conc, mask = tofts_case()
    Y = conc[mask]
    trained = pilot.train_on_pilot(model, lambda sel: Y[sel], np.arange(Y.shape[0]), None, epochs=5)
    assert trained.reads_estimates and trained.architecture["n_in"] == model.n_measurements + 2
    path = trained.save(tmp_path / "pilot.pt")
    again = Trained.load(path)
    assert again.reads_estimates
    direct = trained.estimate(model, Y, None)
    loaded = model.fit(Y, method="dnn", weights=str(path))
    np.testing.assert_allclose(loaded["Ktrans"], direct.params["Ktrans"], rtol=1e-6)
    # the estimate depends on the lsq estimate it reads: another lsq estimate gives another result
    inputs, scale, _ = pilot.voxel_inputs(model, Y, None)
    read = pilot.with_pilot(model, inputs, Y, None, scale)
    from qmri.fitting.net.training import predict

    moved = read.estimates.copy()
    moved[:, 0] *= 1.5
    shifted = pilot.Inputs(read.signals, None, read.groups, read.acqs, None, None, moved)
    assert not np.allclose(predict(trained.networks, read), predict(trained.networks, shifted))
    with pytest.raises(QMRIInputError, match="--training applies to training"):
        model.fit(Y, method="dnn", weights=str(path), training="pilot")


def test_pilot_training_knows_no_model_ivim_with_its_amplitude(few_signals):
    ph = IVIM.phantom(snr=30, block=(6, 6, 1), seed=3)
    model = IVIM.for_phantom(ph)
    maps = model.fit(ph.data, mask=ph.mask, method="dnn", training="pilot", epochs=10)
    assert maps.provenance["network_training"]["mode"] == "pilot"
    assert np.all(maps["status"][ph.mask] == 0)
    # S0 is learned relative to the normalisation and scaled back: the phantom's S0 is 1000
    assert np.median(maps["S0"][ph.mask]) == pytest.approx(1000.0, rel=0.05)
    assert np.median(np.abs(maps["D"][ph.mask] - ph.truth["D"][ph.mask]) / ph.truth["D"][ph.mask]) < 0.2


def test_no_pilot_voxel_converges_and_every_voxel_fails(few_signals):
    ph, model, conc, mask = tofts_case()
    bad = np.full((20, model.n_measurements), np.nan)
    maps = model.fit(bad, method="dnn")
    assert np.all(maps["status"] != 0) and np.all(np.isnan(maps["Ktrans"]))


def test_a_parameter_the_network_estimates_worse_than_lsq_on_held_out_signals_is_lsqs(few_signals):
    ph, model, conc, mask = tofts_case()
    Y = conc[mask]
    trained = pilot.train_on_pilot(model, lambda sel: Y[sel], np.arange(Y.shape[0]), None, epochs=3)
    rec = trained.contract["training"]
    assert rec["check_signals"] == 2_000 and set(rec["lsq_for"]) <= {"Ktrans", "ve"}
    # an lsq estimate equal to the truth beats any network: every parameter is then lsq's
    inputs, scale, _ = pilot.voxel_inputs(model, Y[:500], None)
    held = pilot.with_pilot(model, inputs, Y[:500], None, scale)
    lo, hi = held.estimates.min(axis=0), held.estimates.max(axis=0) + 1e-3
    held.targets = (held.estimates - lo) / (hi - lo)
    assert pilot.lsq_for(trained, held, (lo, hi), model.spec.names) == ["Ktrans", "ve"]
    # and the estimate of a parameter listed is the voxel's lsq estimate
    trained.contract["training"]["lsq_for"] = ["Ktrans"]
    got = trained.estimate(model, Y, None).params
    ref = model.fit(Y, method="lsq")
    low, high = model.network.bounds()
    np.testing.assert_allclose(got["Ktrans"], np.clip(ref["Ktrans"], low[0], high[0]), rtol=1e-6)
    assert not np.allclose(got["ve"], ref["ve"], rtol=1e-3)
