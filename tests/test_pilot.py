"""Networks trained for a fit on signals simulated from a pilot fit (``--training pilot``): least squares
(DCE, ADC) or a self-supervised network (IVIM)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from qmri.errors import QMRIInputError  # noqa: E402
from qmri.fitting.net import pilot  # noqa: E402
from qmri.fitting.net.weights import Trained  # noqa: E402
from qmri.models import ADC, DCE, IVIM  # noqa: E402
from qmri.models.dce.phantom import dce_phantom  # noqa: E402
from qmri.simulate import nrmse_bias  # noqa: E402


@pytest.fixture
def few_signals(monkeypatch):
    """20,000 simulated signals instead of 100,000: the same training, five times cheaper."""
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


@pytest.mark.parametrize("cls, key, source", [(IVIM, "D", "self"), (ADC, "ADC", "lsq")], ids=["IVIM", "ADC"])
def test_pilot_training_knows_no_model_with_its_amplitude(few_signals, cls, key, source):
    ph = cls.phantom(snr=30, block=(6, 6, 1), seed=3)
    model = cls.for_phantom(ph)
    maps = model.fit(ph.data, mask=ph.mask, method="dnn", training="pilot", epochs=10)
    assert (maps.provenance["network_training"]["mode"], maps.provenance["network_training"]["pilot"]) == ("pilot",
                                                                                                          source)
    assert np.all(maps["status"][ph.mask] == 0)
    # S0 is learned relative to the normalisation and scaled back: the phantom's S0 is 1000
    assert np.median(maps["S0"][ph.mask]) == pytest.approx(1000.0, rel=0.05)
    assert np.median(np.abs(maps[key][ph.mask] - ph.truth[key][ph.mask]) / ph.truth[key][ph.mask]) < 0.2


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


def test_ivim_trains_by_default_on_a_self_supervised_pilot_and_reads_the_signal_alone(few_signals, tmp_path):
    ph = IVIM.phantom(snr=20, block=(8, 8, 1), seed=20)
    model = IVIM.for_phantom(ph)
    Y = ph.data[ph.mask]
    trained = pilot.train_on_pilot(model, lambda sel: Y[sel], np.arange(Y.shape[0]), None, epochs=5)
    rec = trained.contract["training"]
    assert (rec["mode"], rec["pilot"], rec["pilot_network"]["mode"]) == ("pilot", "self", "self-supervised")
    assert rec["pilot_network"]["voxels"] == Y.shape[0] and rec["noise"].startswith("Rician")
    assert not trained.reads_estimates and "reads" not in rec
    assert trained.architecture["n_in"] == model.n_measurements          # the signal alone
    path = trained.save(tmp_path / "pilot.pt")
    np.testing.assert_allclose(model.fit(Y, method="dnn", weights=str(path))["D"], trained.estimate(model, Y, None).params["D"],
                               rtol=1e-6)
    maps = model.fit(ph.data, mask=ph.mask, method="dnn", epochs=5)       # IVIM's default: --training pilot
    assert maps.provenance["network_training"]["pilot"] == "self"
    # a parameter listed in lsq_for is the voxel's lsq estimate, though the network does not read it
    trained.contract["training"]["lsq_for"] = ["D"]
    got = trained.estimate(model, Y, None).params
    low, high = model.network.bounds()
    np.testing.assert_allclose(got["D"], np.clip(model.fit(Y, method="lsq")["D"], low[2], high[2]), rtol=1e-5)
    assert not np.allclose(got["f"], model.fit(Y, method="lsq")["f"], rtol=1e-3)


def test_pilot_signals_of_magnitude_images_get_rician_noise_with_its_floor():
    """Pilot voxels whose signal has decayed to ~0 at b = 1000 s/mm², given their true parameters, so
    that their residuals are the noise (SD σ): Rician noise of σ' = σ sqrt(m / (m - p)) (the
    correction for fitted residuals) puts the simulated signal's mean there at σ' sqrt(π/2), the
    noise floor; Gaussian noise would put it at ~0."""
    from qmri.fitting.result import FitResult

    b = np.array([0, 10, 20, 50, 100, 200, 400, 600, 800, 1000.0])
    model = IVIM(b)
    n, sigma = 200, 0.05
    P = {"S0": np.ones(n), "f": np.full(n, 0.1), "D": np.full(n, 0.005), "Dstar": np.full(n, 0.05)}
    rng = np.random.default_rng(0)
    Y = model.signal(P) + rng.normal(0.0, sigma, (n, b.size))
    res = FitResult(params=P, status=np.zeros(n, np.int8), n_iter=np.zeros(n, np.int32), rmse=np.zeros(n),
                    r2=np.zeros(n))
    inputs, _, _ = pilot.pilot_inputs(model, Y, None, rng, n_signals=20_000, pilot=res, source="self")
    floor = sigma * np.sqrt(b.size / (b.size - 4)) * np.sqrt(np.pi / 2)
    mean_last = float(np.mean(inputs.signals[:, -1]))   # normalised by the b = 0 signal, ~1
    assert mean_last == pytest.approx(floor, rel=0.1), (mean_last, floor)
    assert np.all(inputs.signals[:, -1] >= 0)


def test_pilot_inputs_fit_only_the_rows_asked_for():
    """``estimated=k``: only the last k usable simulated signals are fitted by lsq (the held-out ones
    of a network that reads the signal alone); their estimates are those of fitting them all."""
    b = np.array([0, 10, 20, 50, 100, 200, 400, 600, 800, 1000.0])
    model = IVIM(b)
    rng = np.random.default_rng(3)
    n = 300
    P = {"S0": np.full(n, 1000.0), "f": rng.uniform(0.05, 0.3, n), "D": rng.uniform(0.0008, 0.002, n),
         "Dstar": rng.uniform(0.01, 0.08, n)}
    Y = model.signal(P) + rng.normal(0.0, 20.0, (n, b.size))
    every, _, _ = pilot.pilot_inputs(model, Y, None, np.random.default_rng(1), n_signals=400)
    some, _, _ = pilot.pilot_inputs(model, Y, None, np.random.default_rng(1), n_signals=400, estimated=50)
    assert every.n == some.n and np.all(np.isfinite(every.estimates))
    assert np.all(np.isnan(some.estimates[:-50])) and np.all(np.isfinite(some.estimates[-50:]))
    np.testing.assert_allclose(some.estimates[-50:], every.estimates[-50:], rtol=1e-6)
    np.testing.assert_array_equal(some.signals, every.signals)
