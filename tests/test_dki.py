"""DKI: qmri against dipy on the same data, exact recovery, constraints, trace DKI, command line."""

import json

import nibabel as nib
import numpy as np
import pytest

from qmri.fitting.linear import solve_loglinear
from qmri.models.diffusion.acquisition import powder_average
from qmri.models.diffusion.dki import (DKI, TraceDKI, apparent_kurtosis, design_matrix, hemisphere,
                                      tensors_from_compartments)
from qmri.models.diffusion.dki.phantom import dki_phantom, dki_protocol
from qmri.simulate import add_rician_noise

from conftest import run_qmri

dipy = pytest.importorskip("dipy")
from dipy.core.gradients import gradient_table  # noqa: E402
import dipy.reconst.dki as dipy_dki  # noqa: E402
from dipy.sims.voxel import multi_tensor_dki  # noqa: E402

KMIN, KMAX = -3.0 / 7.0, 10.0  # kurtosis clipping pinned identically in qmri and dipy
#: The tensor methods (exact on noise-free data); the network estimator is tested in test_dnn.py.
TENSOR_METHODS = [name for name, m in DKI.methods.items() if hasattr(m, "solve")]
WM_EVALS = np.array([[0.00099, 0, 0], [0.00226, 0.00087, 0.00087]])  # dipy's DKI example compartments


def _random_angles(rng, n):
    return [[(rng.uniform(0, 180), rng.uniform(0, 360))] * 2 for _ in range(n)]


@pytest.fixture(scope="module")
def sim():
    """Two-compartment voxels with random orientation (dipy simulator), noise-free and SNR 30."""
    rng = np.random.default_rng(7)
    bvals, bvecs = dki_protocol()
    gtab = gradient_table(bvals, bvecs=bvecs)
    S, dts, kts = [], [], []
    for ang in _random_angles(rng, 400):
        s, dt, kt = multi_tensor_dki(gtab, WM_EVALS, S0=100.0, angles=ang, fractions=[50, 50], snr=None)
        S.append(s)
        dts.append(dt)
        kts.append(kt)
    S = np.array(S)
    noisy = add_rician_noise(S, 100.0 / 30.0, rng)
    return dict(bvals=bvals, bvecs=bvecs, gtab=gtab, clean=S, noisy=noisy, dt=np.array(dts), kt=np.array(kts))


def _rel(a, b, floor=1e-12):
    return np.abs(a - b) / np.maximum(np.abs(b), floor)


@pytest.mark.parametrize("method", ["wls", "ols"])
def test_linear_fits_match_dipy_on_noisy_data(sim, method):
    model = DKI(sim["bvals"], sim["bvecs"], min_kurtosis=KMIN, max_kurtosis=KMAX)
    maps = model.fit(sim["noisy"], method=method)
    beta = model.coefficients(sim["noisy"], method)[0]
    fit = dipy_dki.DiffusionKurtosisModel(sim["gtab"], fit_method=method.upper()).fit(sim["noisy"])
    # tensors: diffusion tensor elements (mm²/s) and kurtosis tensor elements, relative to the
    # largest element of each voxel's tensor
    dt_q = beta[:, :6] * 1e-3
    dt_d = fit.lower_triangular()
    scale = np.abs(dt_d).max(axis=1, keepdims=True)
    assert np.max(np.abs(dt_q - dt_d) / scale) < 1e-4
    md = fit.md * 1e3
    kt_q = beta[:, 6:21] / (md * md)[:, None]
    scale = np.abs(fit.kt).max(axis=1, keepdims=True)
    assert np.max(np.abs(kt_q - fit.kt) / scale) < 1e-4
    ref = {"MD": fit.md, "AD": fit.ad, "RD": fit.rd, "FA": fit.fa, "S0": None,
           "AK": fit.ak(min_kurtosis=KMIN, max_kurtosis=KMAX), "RK": fit.rk(min_kurtosis=KMIN, max_kurtosis=KMAX),
           "MKT": fit.mkt(min_kurtosis=KMIN, max_kurtosis=KMAX), "KFA": fit.kfa}
    for name, value in ref.items():
        if value is None:
            continue
        ok = np.isfinite(value)
        assert ok.mean() > 0.99
        assert np.max(_rel(maps[name][ok], value[ok], 1e-6)) < 1e-4, name


def test_mean_kurtosis_matches_dipy_analytic_formula(sim, monkeypatch):
    """MK equals dipy's analytic MK (Tabesh 2011) to 1e-4 once dipy's Carlson integrals are exact.

    dipy evaluates R_F and R_D with tolerances 3e-4 / 1e-4 (relative errors ~2e-7), which the
    (b−c)² denominators of the Tabesh formula amplify up to ~1e-3 when two eigenvalues are just
    outside dipy's 2.5% "equal" band; qmri's integrals are exact to rounding (checked against
    scipy below). With scipy's exact integrals substituted, dipy's formula and qmri agree.
    """
    from scipy.special import elliprd, elliprf

    from qmri.models.diffusion.dki.metrics import carlson_rd, carlson_rf, carlson_rf_rd

    rng = np.random.default_rng(3)
    for x, y in rng.uniform(0.05, 20.0, (20, 2)):
        assert carlson_rf(x, y, 1.0) == pytest.approx(elliprf(x, y, 1.0), rel=1e-13)
        assert carlson_rd(x, y, 1.0) == pytest.approx(elliprd(x, y, 1.0), rel=1e-13)
        rf, rd = carlson_rf_rd(x, y, 1.0)  # the joint sequence the maps use
        assert rf == pytest.approx(elliprf(x, y, 1.0), rel=1e-13)
        assert rd == pytest.approx(elliprd(x, y, 1.0), rel=1e-13)
    model = DKI(sim["bvals"], sim["bvecs"], min_kurtosis=KMIN, max_kurtosis=KMAX)
    maps = model.fit(sim["noisy"], method="wls")
    fit = dipy_dki.DiffusionKurtosisModel(sim["gtab"], fit_method="WLS").fit(sim["noisy"])
    monkeypatch.setattr(dipy_dki, "carlson_rf", lambda x, y, z, **kw: elliprf(x, y, z))
    monkeypatch.setattr(dipy_dki, "carlson_rd", lambda x, y, z, **kw: elliprd(x, y, z))
    mk_exact = np.clip(dipy_dki.mean_kurtosis(fit.model_params, analytical=True, fast=False,
                                              min_kurtosis=KMIN, max_kurtosis=KMAX), KMIN, KMAX)
    assert np.max(_rel(maps["MK"], mk_exact, 1e-6)) < 1e-4
    # against dipy's default (fast, approximate integrals) the departures (measured: 54 of 400
    # voxels above 1e-4, at most 4e-3) are all in voxels with two eigenvalues within 20%
    mk_default = fit.mk(min_kurtosis=KMIN, max_kurtosis=KMAX)
    off = _rel(maps["MK"], mk_default, 1e-6) > 1e-4
    ev = fit.evals[off]
    gap = np.minimum(np.abs(ev[:, 0] - ev[:, 1]) / ev[:, 0], np.abs(ev[:, 1] - ev[:, 2]) / ev[:, 1])
    assert np.all(gap < 0.2)
    assert np.median(_rel(maps["MK"], mk_default, 1e-6)) < 1e-4


def test_compartment_tensors_match_dipy_simulator():
    bvals, bvecs = dki_protocol()
    gtab = gradient_table(bvals, bvecs=bvecs)
    u = np.array([0.3, -0.5, 0.8])
    u /= np.linalg.norm(u)
    theta, phi = np.degrees(np.arccos(u[2])), np.degrees(np.arctan2(u[1], u[0]))
    _, dt_d, kt_d = multi_tensor_dki(gtab, WM_EVALS, S0=1.0, angles=[(theta, phi)] * 2, fractions=[50, 50],
                                     snr=None)
    dt, kt = tensors_from_compartments([0.5, 0.5], WM_EVALS, [u, u])
    np.testing.assert_allclose(dt, dt_d, atol=1e-12)
    np.testing.assert_allclose(kt, kt_d, atol=1e-9)


@pytest.mark.parametrize("method", TENSOR_METHODS)
def test_every_method_recovers_noise_free_dipy_signals(sim, method):
    model = DKI(sim["bvals"], sim["bvecs"])
    beta, status, _ = model.coefficients(sim["clean"], method)
    assert np.all(status == 0)
    md = (sim["dt"][:, 0] + sim["dt"][:, 2] + sim["dt"][:, 5]) / 3.0
    np.testing.assert_allclose(beta[:, :6] * 1e-3, sim["dt"], atol=1e-9 * 1e-3 + 0, rtol=0)
    np.testing.assert_allclose(beta[:, 6:21] / (md[:, None] * 1e3) ** 2, sim["kt"], atol=1e-6)
    np.testing.assert_allclose(np.exp(beta[:, 21]), 100.0, rtol=1e-8)


@pytest.mark.parametrize("method", TENSOR_METHODS)
def test_phantom_noise_free_maps_equal_truth(method):
    ph = dki_phantom(snr=np.inf, block=(2, 2, 1))
    maps = DKI(ph.acquisition["bvals"], ph.acquisition["bvecs"]).fit(ph.data, mask=ph.mask, method=method)
    for k in ("S0", "MD", "AD", "RD", "FA", "MK", "AK", "RK", "MKT"):
        np.testing.assert_allclose(maps[k][ph.mask], ph.truth[k][ph.mask], rtol=1e-6, atol=1e-9, err_msg=k)


def test_constrained_fit_satisfies_its_constraints_on_noisy_data():
    ph = dki_phantom(snr=20.0, seed=1, block=(6, 6, 2))
    model = DKI(ph.acquisition["bvals"], ph.acquisition["bvecs"])
    Y = ph.data[ph.mask]
    # 100 test directions, none of them the fit's constraint directions
    R = np.linalg.qr(np.random.default_rng(5).normal(size=(3, 3)))[0]
    dirs = hemisphere(100) @ R.T
    b_wls = model.coefficients(Y, "wls")[0]
    b_c, status, _ = model.coefficients(Y, "cwls")
    assert np.all(status == 0)
    k_wls = np.nanmin(apparent_kurtosis(b_wls, dirs), axis=1)
    k_c = apparent_kurtosis(b_c, dirs)
    assert np.sum(k_wls < 0) > 0.05 * len(Y)  # the unconstrained fit has many implausible voxels
    assert np.sum(np.min(k_c, axis=1) < 0) == 0
    d_c = b_c[:, :6] @ np.stack([dirs[:, 0] ** 2, 2 * dirs[:, 0] * dirs[:, 1], dirs[:, 1] ** 2,
                                 2 * dirs[:, 0] * dirs[:, 2], 2 * dirs[:, 1] * dirs[:, 2], dirs[:, 2] ** 2])
    assert np.all(d_c > 0)
    # upper bound K(n) <= 3 / (b_max D(n)) is imposed on 300 directions; between them it holds to 5%
    assert np.max(k_c * d_c * (model.b_max / 1000.0) / 3.0) < 1.05


def test_constrained_solver_matches_a_general_qp_solver():
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    X = np.c_[rng.normal(size=(30, 4)), np.ones(30)]
    beta_true = np.array([0.5, -0.3, 0.2, -0.1, 1.0])
    y = np.exp(X @ beta_true + 0.05 * rng.normal(size=30))
    C = np.c_[np.eye(4), np.zeros(4)]  # first four coefficients >= 0
    d = np.zeros(4)
    beta, ok, _ = solve_loglinear(X, y[None, :], method="wls", constraints=(C, d))
    b0 = solve_loglinear(X, y[None, :], method="ols")[0][0]
    w = np.exp(2 * X @ b0)
    obj = lambda b: np.sum(w * (X @ b - np.log(y)) ** 2)  # noqa: E731
    ref = minimize(obj, np.abs(b0), constraints=[{"type": "ineq", "fun": lambda b: C @ b - d}],
                   method="SLSQP", options={"ftol": 1e-14, "maxiter": 500}).x
    assert ok[0]
    assert np.all(C @ beta[0] >= -1e-12)
    np.testing.assert_allclose(beta[0], ref, atol=1e-6)


def test_design_matrix_is_dipys_in_ms_per_um2():
    bvals, bvecs = dki_protocol()
    gtab = gradient_table(bvals, bvecs=bvecs)
    Xd = dipy_dki.design_matrix(gtab)
    Xq = design_matrix(bvals, bvecs)
    np.testing.assert_allclose(Xq[:, :6] * 1e3, Xd[:, :6], atol=1e-9)
    np.testing.assert_allclose(Xq[:, 6:21] * 1e6, Xd[:, 6:21], rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(Xq[:, 21], -Xd[:, 21])


# ---------------------------------------------------------------------------------------------
# Trace DKI
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bvals", [[0, 250, 500, 1000, 1500, 2000], [200, 500, 800, 1200, 1600, 2000]],
                         ids=["with-b0", "without-b0"])
def test_trace_dki_recovers_noise_free_truth(bvals):
    rng = np.random.default_rng(0)
    D = rng.uniform(0.5e-3, 2.5e-3, 300)
    K = rng.uniform(0.0, 2.0, 300) * np.minimum(1.0, 1.5 / (2000 * D))
    model = TraceDKI(bvals)
    sig = model.signal({"S0": 800.0, "D": D, "K": K})
    maps = model.fit(sig)
    assert np.all(maps["status"] == 0)
    np.testing.assert_allclose(maps["D"], D, rtol=1e-6)
    np.testing.assert_allclose(maps["K"], K, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(maps["S0"], 800.0, rtol=1e-6)


def test_trace_dki_is_unbiased_at_snr_30():
    rng = np.random.default_rng(1)
    bvals = np.array([0, 250, 500, 750, 1000, 1500, 2000.0])
    model = TraceDKI(bvals)
    n = 4000
    truth = {"S0": 1000.0, "D": np.full(n, 1.0e-3), "K": np.full(n, 1.0)}
    noisy = add_rician_noise(model.signal(truth), 1000.0 / 30.0, rng)
    maps = model.fit(noisy)
    assert np.mean(maps["status"] == 0) > 0.99
    assert abs(np.nanmean(maps["K"]) - 1.0) < 0.05
    assert abs(np.nanmean(maps["D"]) / 1.0e-3 - 1.0) < 0.05


def test_powder_average_groups_shells():
    bvals = np.array([0, 5, 995, 1000, 1005, 2000, 2010.0])
    data = np.arange(7.0)[None, :] * np.ones((2, 1))
    avg, b = powder_average(data, bvals, np.ones((7, 3)) / np.sqrt(3))
    np.testing.assert_allclose(b, [2.5, 1000.0, 2005.0])
    np.testing.assert_allclose(avg[0], [0.5, 3.0, 5.5])


def test_bad_acquisitions_raise_clear_errors():
    from qmri.errors import QMRIInputError

    bvals, bvecs = dki_protocol()
    with pytest.raises(QMRIInputError, match="3 distinct b-values"):
        DKI(bvals[bvals < 1500], bvecs[bvals < 1500])
    g = hemisphere(10)
    with pytest.raises(QMRIInputError, match="15 distinct gradient directions"):
        DKI(np.r_[0.0, np.full(10, 1000.0), np.full(10, 2000.0)], np.r_[[[0.0, 0, 0]], g, g])
    bad = bvecs.copy()
    bad[5] *= 1.2
    with pytest.raises(QMRIInputError, match="not unit length"):
        DKI(bvals, bad)
    with pytest.raises(QMRIInputError, match="3 distinct b-values"):
        TraceDKI([0, 1000, 1000])


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def _qmri(*args):
    return run_qmri(*args)


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("dki_phantom")
    r = _qmri("phantom", "dki", "--out-dir", out, "--block", 4, 4, 1)
    assert r.returncode == 0, r.stderr
    return out


def test_cli_full_tensor_and_trace(phantom_dir, tmp_path):
    p = phantom_dir
    r = _qmri("dki", p / "dki.nii.gz", "--bval", p / "dki.bval", "--bvec", p / "dki.bvec", "--mask",
              p / "mask.nii.gz", "--method", "cwls", "--out-dir", tmp_path / "full", "--plot")
    assert r.returncode == 0, r.stderr
    assert "full-tensor DKI, method cwls" in r.stdout
    for k in ("S0", "MD", "AD", "RD", "FA", "MK", "AK", "RK", "MKT", "KFA", "rmse", "r2", "status", "n_iter"):
        assert (tmp_path / "full" / f"{k}.nii.gz").exists() and (tmp_path / "full" / f"{k}.json").exists()
    assert (tmp_path / "full" / "maps.png").exists()
    side = json.loads((tmp_path / "full" / "MD.json").read_text())
    assert "mm2/s" in json.dumps(side)
    mask = nib.load(p / "mask.nii.gz").get_fdata() > 0
    md = nib.load(tmp_path / "full" / "MD.nii.gz").get_fdata()
    md_true = nib.load(p / "truth_MD.nii.gz").get_fdata()
    assert np.median(np.abs(md[mask] - md_true[mask]) / md_true[mask]) < 0.1
    r = _qmri("dki", p / "dki.nii.gz", "--bval", p / "dki.bval", "--bvec", p / "dki.bvec", "--trace",
              "--out-dir", tmp_path / "trace")
    assert r.returncode == 0, r.stderr
    assert "trace DKI (direction-averaged per b-shell), 3 b-values" in r.stdout
    assert {f.name for f in (tmp_path / "trace").glob("*.nii.gz")} >= {"S0.nii.gz", "D.nii.gz", "K.nii.gz"}
    # same outputs again without --force: refused before fitting
    r = _qmri("dki", p / "dki.nii.gz", "--bval", p / "dki.bval", "--bvec", p / "dki.bvec", "--trace",
              "--out-dir", tmp_path / "trace")
    assert r.returncode != 0 and "--force" in r.stderr


def test_cli_bad_inputs(phantom_dir, tmp_path):
    p = phantom_dir
    bvals = np.loadtxt(p / "dki.bval")
    bvecs = np.loadtxt(p / "dki.bvec")
    (tmp_path / "short.bval").write_text(" ".join(f"{b:g}" for b in bvals[:-1]))
    r = _qmri("dki", p / "dki.nii.gz", "--bval", tmp_path / "short.bval", "--out-dir", tmp_path / "o1")
    assert r.returncode == 2 and "b-values but" in r.stderr and "Traceback" not in r.stderr
    bad = bvecs.copy()
    bad[:, 10] *= 1.5
    np.savetxt(tmp_path / "bad.bvec", bad)
    r = _qmri("dki", p / "dki.nii.gz", "--bval", p / "dki.bval", "--bvec", tmp_path / "bad.bvec",
              "--out-dir", tmp_path / "o2")
    assert r.returncode == 2 and "not unit length" in r.stderr
    few = bvecs.copy()
    few[:, 3:] = few[:, 3:3 + 10][:, np.arange(bvals.size - 3) % 10]
    np.savetxt(tmp_path / "few.bvec", few)
    r = _qmri("dki", p / "dki.nii.gz", "--bval", p / "dki.bval", "--bvec", tmp_path / "few.bvec",
              "--out-dir", tmp_path / "o3")
    assert r.returncode == 2 and "distinct directions" in r.stderr and "--trace" in r.stderr
    r = _qmri("dki", p / "dki.nii.gz", "--bval", p / "dki.bval", "--bmax", 1500, "--out-dir", tmp_path / "o4")
    assert r.returncode == 2 and "3 distinct b-values" in r.stderr
    r = _qmri("dki", p / "dki.nii.gz", "--bval", p / "dki.bval", "--mask", p / "truth_MD.nii.gz",
              "--bvec", p / "dki.bvec", "--out-dir", tmp_path / "o5", "--bmax", 100)
    assert r.returncode == 2


def test_cli_real_brain_data_small_101D(tmp_path):
    """dipy's shipped multi-shell brain sample (no download): maps finite and plausible."""
    from dipy.data import get_fnames
    from dipy.segment.mask import median_otsu

    fdata, fbval, fbvec = (str(f) for f in get_fnames(name="small_101D"))
    r = _qmri("dki", fdata, "--bval", fbval, "--bvec", fbvec, "--bmax", 2500, "--out-dir", tmp_path)
    assert r.returncode == 0, r.stderr
    data = nib.load(fdata).get_fdata()
    bvals = np.loadtxt(fbval)
    _, brain = median_otsu(data[..., bvals < 50].mean(axis=-1), median_radius=1, numpass=1)
    assert brain.sum() > 50
    md = nib.load(tmp_path / "MD.nii.gz").get_fdata()[brain]
    mk = nib.load(tmp_path / "MK.nii.gz").get_fdata()[brain]
    assert np.all(np.isfinite(md)) and np.all(np.isfinite(mk))
    assert np.mean((md > 0.1e-3) & (md < 3.5e-3)) >= 0.95
    assert np.mean((mk >= 0) & (mk <= 3)) >= 0.95


def test_wls_matches_dipy_on_real_small_101D(monkeypatch):
    """dipy's real multi-shell sample (lowest b = 15 s/mm², no b = 0): the design matrix uses the
    measured b-values and directions, as dipy's, so the WLS maps agree (with b <= 50 set to 0 in
    the design, MD differed by a median 0.65 % and no voxel was within 1e-3)."""
    from dipy.data import get_fnames
    from scipy.special import elliprd, elliprf

    fdata, fbval, fbvec = (str(f) for f in get_fnames(name="small_101D"))
    Y = nib.load(fdata).get_fdata().reshape(-1, 102)
    bvals, bvecs = np.loadtxt(fbval), np.loadtxt(fbvec).T
    assert bvals.min() == 15.0
    maps = DKI(bvals, bvecs, min_kurtosis=KMIN, max_kurtosis=KMAX).fit(Y, method="wls")
    fit = dipy_dki.DiffusionKurtosisModel(gradient_table(bvals, bvecs=bvecs), fit_method="WLS").fit(Y)
    monkeypatch.setattr(dipy_dki, "carlson_rf", lambda x, y, z, **kw: elliprf(x, y, z))
    monkeypatch.setattr(dipy_dki, "carlson_rd", lambda x, y, z, **kw: elliprd(x, y, z))
    mk = np.clip(dipy_dki.mean_kurtosis(fit.model_params, analytical=True, fast=False, min_kurtosis=KMIN,
                                        max_kurtosis=KMAX), KMIN, KMAX)
    ref = {"MD": fit.md, "FA": fit.fa, "MK": mk, "MKT": fit.mkt(min_kurtosis=KMIN, max_kurtosis=KMAX)}
    for name, value in ref.items():
        close = _rel(maps[name], value, 1e-6) < 1e-3
        assert close.mean() >= 0.99, f"{name}: {100 * close.mean():.1f}% of voxels within 1e-3 of dipy"


def _qp_reference_cost(X, y_raw, C, d):
    """WLS cost at the optimum of ``min Σ w (Xβ − log y)²`` s.t. ``C β >= d`` found by scipy's general
    SLSQP solver (weights from the OLS prediction, as dipy's and qmri's WLS), and the cost function."""
    from scipy.linalg import cholesky, solve_triangular
    from scipy.optimize import minimize

    y = np.log(np.maximum(y_raw, 1e-4))
    w = np.exp(2 * X @ np.linalg.lstsq(X, y, rcond=None)[0])
    A = X.T @ (w[:, None] * X)
    b_wls = np.linalg.solve(A, X.T @ (w * y))
    L = cholesky(A / np.trace(A) * A.shape[0], lower=True)  # u = Lᵀ(β − β_wls): a well-scaled problem
    G, h = solve_triangular(L, C.T, lower=True).T, d - C @ b_wls
    u = minimize(lambda u: u @ u, np.zeros(X.shape[1]), jac=lambda u: 2 * u, method="SLSQP",
                 constraints=[{"type": "ineq", "fun": lambda u: G @ u - h, "jac": lambda u: G}],
                 options={"ftol": 1e-15, "maxiter": 1000}).x
    cost = lambda b: np.sum(w * (X @ b - y) ** 2)  # noqa: E731
    return cost(b_wls + solve_triangular(L.T, u)), cost


@pytest.mark.parametrize("snr", [10, 20, 40])
def test_constrained_fit_never_fails_and_is_the_qp_optimum(snr):
    """cwls fits every voxel wls fits (it used to give up when more than 96 constraints entered the
    working set), leaves no negative kurtosis map, and each solution is the optimum of its QP."""
    from qmri.models.diffusion.dki.constrained import constrained_fit
    from qmri.models.diffusion.dki.phantom import dki_protocol

    bvals, bvecs = dki_protocol(directions_per_shell=32)
    ph = dki_phantom(snr=snr, seed=0, block=(6, 6, 2), bvals=bvals, bvecs=bvecs)
    model = DKI(bvals, bvecs)
    Y = ph.data[ph.mask]
    maps = model.fit(Y, method="cwls")
    assert np.all(model.fit(Y, method="wls")["status"] == 0)
    assert np.all(maps["status"] == 0)
    for k in ("MK", "AK", "RK", "MKT"):
        assert np.all(maps[k] >= 0), k
    beta, ok, rounds, (C, d, extra) = constrained_fit(model.X, Y, model.b_max, return_constraints=True)
    sample = np.random.default_rng(snr).choice(np.flatnonzero(rounds > 0), 8, replace=False)
    for v in sample:
        Cv, dv = (np.vstack([C, extra[v][0]]), np.r_[d, extra[v][1]]) if v in extra else (C, d)
        ref, cost = _qp_reference_cost(model.X, Y[v], Cv, dv)
        assert np.min(Cv @ beta[v] - dv) > -1e-9
        assert abs(cost(beta[v]) - ref) <= 1e-6 * ref


def test_constrained_fit_keeps_voxels_that_need_many_constraints():
    """Four SNR-10 voxels whose working set needed more than 96 constraints (status failed, NaN
    maps, before); the wls fit of each is fine."""
    from qmri.models.diffusion.dki.phantom import dki_protocol

    bvals, bvecs = dki_protocol(directions_per_shell=32)
    ph = dki_phantom(snr=10, seed=0, block=(24, 24, 8), bvals=bvals, bvecs=bvecs)
    Y = ph.data[ph.mask][[1256, 6419, 11056, 12127]]
    model = DKI(bvals, bvecs)
    assert np.all(model.fit(Y, method="wls")["status"] == 0)
    maps = model.fit(Y, method="cwls")
    assert np.all(maps["status"] == 0) and np.all(np.isfinite(maps["MK"])) and np.all(maps["MK"] >= 0)
