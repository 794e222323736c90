"""IVIM-kurtosis against independent references: the equation of Lu et al. (JMRI 2012;36:1088) written
out here, analytic ground truth with and without noise, the K = 0 limit against qmri's IVIM, and
scipy's curve_fit on the same voxels."""

import numpy as np
import pytest

from qmri.errors import QMRIInputError
from qmri.fitting import STATUS_CONVERGED
from qmri.models import IVIM, IVIMKurtosis

B = np.array([0, 10, 20, 30, 50, 80, 100, 150, 200, 400, 600, 800, 1000, 1500, 2000.0])
NAMES = ("S0", "f", "D", "Dstar", "K")


def _reference_signal(b, S0, f, D, Dstar, K):
    """S0 (f e^{-b D*} + (1 - f) e^{-b D + b² D² K / 6}), Lu et al. 2012, eq. 3."""
    b = np.asarray(b, float)[None, :]
    col = [np.atleast_1d(np.asarray(x, float))[:, None] for x in (S0, f, D, Dstar, K)]
    S0, f, D, Dstar, K = col
    return S0 * (f * np.exp(-b * Dstar) + (1 - f) * np.exp(-b * D + b * b * D * D * K / 6))


def _random_truth(n, seed=0):
    rng = np.random.default_rng(seed)
    return {"S0": rng.uniform(500, 2000, n), "f": rng.uniform(0.05, 0.2, n), "D": rng.uniform(0.8e-3, 1.5e-3, n),
            "Dstar": rng.uniform(0.01, 0.05, n), "K": rng.uniform(0.5, 1.2, n)}


def test_signal_is_the_published_equation():
    t = _random_truth(50)
    np.testing.assert_allclose(IVIMKurtosis(B).signal(t), _reference_signal(B, *(t[k] for k in NAMES)), rtol=1e-13)


def test_lsq_recovers_analytic_truth_without_noise():
    t = _random_truth(300, seed=1)
    maps = IVIMKurtosis(B).fit(_reference_signal(B, *(t[k] for k in NAMES)), method="lsq")
    assert np.all(maps["status"] == STATUS_CONVERGED)
    for k in NAMES:
        np.testing.assert_allclose(maps[k], t[k], rtol=1e-6, err_msg=k)


def test_lsq_bias_is_small_on_the_noisy_phantom():
    """SNR 200 (Rician), 100 voxels per region: the mean estimate of f, D and K of every region is
    within 5 %, 1 % and 3 % of the truth."""
    ph = IVIMKurtosis.phantom(snr=200, seed=3, block=(10, 10, 1))
    maps = IVIMKurtosis.for_phantom(ph).fit(ph.data, mask=ph.mask, method="lsq")
    for r in range(1, len(ph.regions) + 1):
        sel = ph.labels == r
        for k, tol in (("f", 0.05), ("D", 0.01), ("K", 0.03)):
            truth = ph.truth[k][sel][0]
            assert abs(np.mean(maps[k][sel]) / truth - 1) < tol, (ph.regions[r - 1]["name"], k)


def test_segmented_is_exact_without_perfusion():
    """f = 0: the log-linear fit over b >= threshold, quadratic in b, sees the whole signal, so D and K are exact."""
    t = _random_truth(40, seed=2)
    t["f"] = np.zeros(40)
    maps = IVIMKurtosis(B).fit(_reference_signal(B, *(t[k] for k in NAMES)), method="segmented")
    np.testing.assert_allclose(maps["D"], t["D"], rtol=1e-9)
    np.testing.assert_allclose(maps["K"], t["K"], rtol=1e-7)
    np.testing.assert_allclose(maps["S0"], t["S0"], rtol=1e-12)
    np.testing.assert_allclose(maps["f"], 0.0, atol=1e-9)


def test_k_zero_is_ivim():
    """K = 0: the signal is qmri's IVIM signal on the same b-values, and a fit of IVIM signals finds K = 0
    and IVIM's own estimates."""
    b = B[B <= 1000]
    rng = np.random.default_rng(4)
    t = {"S0": rng.uniform(500, 2000, 30), "f": rng.uniform(0.05, 0.3, 30), "D": rng.uniform(0.5e-3, 2e-3, 30),
         "Dstar": rng.uniform(0.01, 0.08, 30)}
    sig = IVIM(b).signal(t)
    np.testing.assert_allclose(IVIMKurtosis(b).signal({**t, "K": 0.0}), sig, rtol=1e-14)
    kurt = IVIMKurtosis(b).fit(sig, method="lsq")
    ivim = IVIM(b).fit(sig, method="lsq")
    np.testing.assert_allclose(kurt["K"], 0.0, atol=1e-6)
    for k in ("S0", "f", "D", "Dstar"):
        np.testing.assert_allclose(kurt[k], ivim[k], rtol=1e-5, err_msg=k)


def test_lsq_agrees_with_scipy_curve_fit_on_the_same_voxels():
    """scipy's bounded trust-region fit of the same noisy voxels (SNR 100), started from the truth, with the
    equation written out here: the same minimum in every voxel (cost within 1e-5, estimates within 0.5 %)."""
    optimize = pytest.importorskip("scipy.optimize")
    t = _random_truth(40, seed=5)
    rng = np.random.default_rng(6)
    clean = _reference_signal(B, *(t[k] for k in NAMES))
    Y = clean + rng.normal(0, 1000 / 100, clean.shape)
    maps = IVIMKurtosis(B).fit(Y, method="lsq")
    lo = np.array([0, 0, 0, 0.005, 0])  # qmri's S0 bounds (0.5-2 x the b=0 signal) do not bind on these voxels
    hi = np.array([1e4, 1, 0.005, 0.2, 3])
    atol = np.array([1e-3, 1e-4, 1e-7, 1e-5, 1e-4])
    for v in range(Y.shape[0]):
        p0 = np.array([t[k][v] for k in NAMES])
        p, _ = optimize.curve_fit(lambda b, *p: _reference_signal(b, *p)[0], B, Y[v], p0=p0, bounds=(lo, hi),
                                  method="trf", x_scale=p0, xtol=1e-14, ftol=1e-14, gtol=1e-14, max_nfev=20000)
        ours = np.array([maps[k][v] for k in NAMES])
        ssr_scipy = np.sum((_reference_signal(B, *p)[0] - Y[v]) ** 2)
        ssr_ours = np.sum((_reference_signal(B, *ours)[0] - Y[v]) ** 2)
        assert ssr_ours <= ssr_scipy * (1 + 1e-5), v
        assert np.all(np.abs(ours - p) <= 5e-3 * np.abs(p) + atol), (v, ours, p)


def test_acquisition_checks():
    with pytest.raises(QMRIInputError, match="IVIMKurtosis needs at least 5 distinct b-values"):
        IVIMKurtosis([0, 100, 500, 1000])
    with pytest.raises(QMRIInputError, match="IVIMKurtosis segmented needs at least 3 b-values >= 200"):
        IVIMKurtosis([0, 50, 100, 150, 300, 1000]).fit(np.ones(6), method="segmented")


def test_b_beyond_the_kurtosis_range_is_named():
    from qmri.workflows.diffusion import b_range_note

    assert b_range_note(IVIMKurtosis(B)) is None
    note = b_range_note(IVIMKurtosis(np.r_[B, 3500.0]))
    assert "beyond the range of the IVIMKurtosis model" in note and note.endswith("fit with --bmax 3000")


def test_lsq_lowers_a_dstar_on_its_upper_bound_to_the_edge_of_the_flat_cost(monkeypatch):
    """No b-value between 0 and 200 s/mm²: the perfusion signal (D* 0.15 mm²/s) is gone at the first
    non-zero b, the cost is flat in D* and least squares ends D* on its bound. The lsq step of IVIM
    (:func:`qmri.models.diffusion.ivim.dstar_plateau`) lowers D* there, keeping D and K, with a cost
    within 0.1 residual variance of the minimum (cost from the equation written out here)."""
    b = np.array([0, 0, 200, 400, 600, 800, 1000, 1200, 1500, 1800, 2000.0])
    t = {"S0": np.full(200, 1000.0), "f": np.full(200, 0.1), "D": np.full(200, 1.1e-3), "Dstar": np.full(200, 0.15),
         "K": np.full(200, 0.8)}
    rng = np.random.default_rng(7)
    Y = _reference_signal(b, *(t[k] for k in NAMES)) + rng.normal(0, 1000 / 50, (200, b.size))
    model = IVIMKurtosis(b)
    after = model.fit(Y, method="lsq")
    monkeypatch.setattr(IVIMKurtosis.methods["lsq"], "refine", None)  # the lsq step left out
    before = model.fit(Y, method="lsq")
    on_bound = before["Dstar"] >= 0.2 * 0.99
    moved = after["Dstar"] < before["Dstar"]
    assert on_bound.sum() >= 20 and np.all(moved[on_bound])
    for k in ("D", "K"):
        np.testing.assert_array_equal(after[k], before[k])
    P_after = np.stack([after[k] for k in NAMES], axis=1)[moved]
    P_before = np.stack([before[k] for k in NAMES], axis=1)[moved]
    cost = [np.sum((_reference_signal(b, *P[v])[0] - Y[moved][v]) ** 2) for P in (P_after, P_before)
            for v in range(int(moved.sum()))]
    c_after, c_before = np.split(np.array(cost), 2)
    assert np.all(c_after <= c_before * (1 + 0.1 / (b.size - 5)) * (1 + 1e-9))


def test_network_training_signals_decrease_with_b():
    """The simulated training parameters of ``dnn`` stay where the tissue signal falls with b over the
    protocol (b_max D K <= 3, the minimum of exp(-b D + b² D² K / 6) at b = 3 / (D K)), and still
    cover K up to its bound where D allows it."""
    model = IVIMKurtosis(B)
    P = model.network.sample(20000, np.random.default_rng(0))
    lo, hi = model.network.bounds()
    assert np.all((P >= lo) & (P <= hi))
    assert np.max(B.max() * P[:, 2] * P[:, 4]) <= 3 * (1 + 1e-12)
    S = _reference_signal(B, *P.T)
    assert np.all(np.diff(S, axis=1) <= 1e-12 * S[:, :1])
    assert np.mean(P[:, 4] > 2.5) > 0.01


def test_a_fit_without_high_b_names_the_b_range_kurtosis_needs(tmp_path, capsys):
    """b only up to 600 s/mm²: K ends on its bound and the warning's likely cause is the missing high
    b-values (``needs_b_max``), not a generic one."""
    from qmri.cli.main import main

    assert main(["phantom", "ivimk", "--out-dir", str(tmp_path / "ph")]) == 0
    capsys.readouterr()
    ph = tmp_path / "ph"
    args = ["ivimk", str(ph / "ivimk.nii.gz"), "--mask", str(ph / "mask.nii.gz")]
    assert main(args + ["--bmax", "600", "--out-dir", str(tmp_path / "low")]) == 0
    err = capsys.readouterr().err
    assert "warning: K is at its lower bound" in err
    assert "likely cause: b-values only up to 600 s/mm2: K is told apart from D only by the curvature" in err
    assert main(args + ["--out-dir", str(tmp_path / "full")]) == 0
    assert "b-values only up to" not in capsys.readouterr().err
