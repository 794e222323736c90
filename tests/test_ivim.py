"""IVIM model and the shared fitting machinery: recovery, bad voxels, shapes, errors, standard errors."""

import numpy as np
import pytest

from qmri.errors import QMRIInputError
from qmri.fitting import STATUS_CONVERGED, STATUS_FAILED
from qmri.models import IVIM

B = np.array([0, 10, 20, 30, 50, 75, 100, 150, 200, 400, 600, 800, 1000.0])


def _random_truth(n, seed=0):
    rng = np.random.default_rng(seed)
    return {"S0": rng.uniform(500, 2000, n), "f": rng.uniform(0.05, 0.4, n),
            "D": rng.uniform(0.4e-3, 2.5e-3, n), "Dstar": rng.uniform(0.01, 0.15, n)}


def test_lsq_recovers_truth_on_noise_free_signals():
    truth = _random_truth(500)
    model = IVIM(B)
    maps = model.fit(model.signal(truth), method="lsq")
    assert np.all(maps["status"] == STATUS_CONVERGED)
    for k, v in truth.items():
        np.testing.assert_allclose(maps[k], v, rtol=1e-6, err_msg=k)


def test_segmented_is_exact_for_monoexponential_signal():
    # f = 0: the high-b log-linear fit sees the whole signal, so D is exact and f is 0
    model = IVIM(B)
    truth = {"S0": np.full(10, 1000.0), "f": np.zeros(10), "D": np.linspace(0.5e-3, 2e-3, 10), "Dstar": np.full(10, 0.05)}
    maps = model.fit(model.signal(truth), method="segmented")
    np.testing.assert_allclose(maps["D"], truth["D"], rtol=1e-9)
    np.testing.assert_allclose(maps["f"], 0.0, atol=1e-9)


@pytest.mark.parametrize("method", IVIM.methods)
def test_bad_voxels_get_nan_and_failed_status(method):
    model = IVIM(B)
    good = model.signal({"S0": 1000.0, "f": 0.1, "D": 1e-3, "Dstar": 0.03})
    data = np.tile(good, (6, 1))
    data[1, 3] = np.nan
    data[2, 5] = np.inf
    data[3] = 0.0
    data[4, 0] = -5.0  # negative signal at b=0: cannot normalise
    maps = model.fit(data, method=method)
    assert list(maps["status"]) == [STATUS_CONVERGED] + [STATUS_FAILED] * 4 + [STATUS_CONVERGED]
    for k in ("S0", "f", "D", "Dstar", "rmse"):
        assert np.all(np.isnan(maps[k][1:5])) and np.all(np.isfinite(maps[k][[0, 5]]))


def test_shapes_mask_and_nan_outside():
    model = IVIM(B)
    truth = _random_truth(4 * 3 * 2)
    data = model.signal(truth).reshape(4, 3, 2, B.size)
    mask = np.zeros((4, 3, 2), bool)
    mask[1:3, :, 1] = True
    maps = model.fit(data, mask=mask)
    assert maps["D"].shape == (4, 3, 2)
    assert np.all(np.isnan(maps["D"][~mask])) and np.all(np.isfinite(maps["D"][mask]))
    np.testing.assert_allclose(maps["D"][mask], truth["D"].reshape(4, 3, 2)[mask], rtol=1e-6)
    single = model.fit(data[1, 1, 1])  # one voxel, shape (n_b,)
    assert single["D"].shape == ()
    assert maps.units["D"] == "mm2/s" and maps.units["f"] == ""


def test_standard_errors_match_monte_carlo_spread():
    model = IVIM(B)
    clean = model.signal({"S0": 1000.0, "f": 0.3, "D": 1.2e-3, "Dstar": 0.05})
    rng = np.random.default_rng(3)
    data = clean + rng.normal(0, 5.0, (4000, B.size))  # SNR 200, Gaussian
    maps = model.fit(data, compute_se=True)
    for k in ("f", "D"):
        spread = np.std(maps[k])
        assert 0.8 < np.median(maps[f"{k}_se"]) / spread < 1.25, k


def test_presets_and_overrides():
    m = IVIM(B, preset="liver", initial_guess={"D": 0.0012}, bounds={"f": (0, 0.5)})
    assert m.initial[1] == pytest.approx(0.2305) and m.initial[2] == pytest.approx(0.0012)
    assert m.upper[1] == 0.5


@pytest.mark.parametrize("kwargs,msg", [
    ({"bvals": [[0, 1], [2, 3]]}, "1-D"),
    ({"bvals": [0, -10, 200, 400]}, ">= 0"),
    ({"bvals": B, "preset": "toe"}, "unknown preset"),
    ({"bvals": B, "bounds": {"Q": (0, 1)}}, "unknown parameter"),
    ({"bvals": B, "bounds": {"f": (0.5, 0.1)}}, "lower <= upper"),
])
def test_bad_construction(kwargs, msg):
    with pytest.raises(QMRIInputError, match=msg):
        IVIM(**kwargs)


def test_bad_fit_calls():
    model = IVIM(B)
    with pytest.raises(QMRIInputError, match="measurements"):
        model.fit(np.ones((3, B.size - 1)))
    with pytest.raises(QMRIInputError, match="unknown method"):
        model.fit(np.ones((3, B.size)), method="magic")
    with pytest.raises(QMRIInputError, match="mask shape"):
        model.fit(np.ones((3, B.size)), mask=np.ones(4, bool))
    with pytest.raises(QMRIInputError, match="at least 2 b-values"):
        IVIM([0, 10, 20, 300]).fit(np.ones(4))
    with pytest.raises(QMRIInputError, match="4 distinct"):
        IVIM([0, 0, 200, 400]).fit(np.ones(4), method="lsq")


def test_lsq_at_least_as_accurate_as_scipy_curve_fit_on_the_phantom():
    """f, D and D* NRMSE of ``lsq`` against scipy's per-voxel ``curve_fit`` (bounded TRF, OSIPI bounds and
    start) on the same 1,000 phantom voxels (SNR 30). Measured: f 0.576 / 0.587, D 0.1306 / 0.1325,
    D* 0.930 / 0.962 (before the D* plateau step, D* was 1.026: least squares drove D* to its upper
    bound wherever the cost is flat there)."""
    from scipy.optimize import curve_fit

    from qmri.simulate import nrmse_bias

    ph = IVIM.phantom(snr=30, seed=1, block=(10, 10, 1))
    Y = ph.data[ph.mask]
    truth = {k: v[ph.mask] for k, v in ph.truth.items()}
    b = np.asarray(ph.acquisition["bvals"])
    maps = IVIM(b).fit(Y, method="lsq")

    def biexp(bb, s0, f, d, ds):
        return s0 * (f * np.exp(-bb * ds) + (1 - f) * np.exp(-bb * d))

    ref = np.array([curve_fit(biexp, b, y / y[b == b.min()].mean(), p0=[1.0, 0.1, 0.001, 0.01],
                              bounds=([0.5, 0, 0, 0.005], [2.0, 1, 0.005, 0.2]))[0] for y in Y])
    for j, name in ((1, "f"), (2, "D"), (3, "Dstar")):
        ours = nrmse_bias(maps[name], truth[name], slice(None))[0]
        theirs = nrmse_bias(ref[:, j], truth[name], slice(None))[0]
        assert ours <= theirs, f"{name}: NRMSE {ours:.4f} vs scipy {theirs:.4f}"
