"""Cramér–Rao lower bound maps (``--crlb``): the kernel against an independent finite-difference Fisher
computation, the Rician Fisher information against quadrature, the maps a fit writes, the errors,
and (slow) the spread of an efficient estimator approaching the bound."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from qmri.cli.main import main
from qmri.fitting.crlb import crlb, rician_factor
from qmri.maps import ParameterMaps
from qmri.models import ADC, COMMANDS, DCE, IVIM


def fd_crlb(spec, acq, p, sigma, weights=None, C=None):
    """Independent reference: central-difference Jacobian of the signal alone (Richardson-extrapolated,
    steps 1e-4 and 5e-5 of each parameter's magnitude), Fisher JᵀWJ/σ², inverse by numpy."""
    p = np.asarray(p, dtype=np.float64)
    cols = []
    for a in range(p.size):
        h = 1e-4 * max(abs(p[a]), 1e-6)

        def diff(step):
            up, down = p.copy(), p.copy()
            up[a] += step
            down[a] -= step
            return (spec.evaluate(up, acq, C) - spec.evaluate(down, acq, C)) / (2 * step)

        cols.append((4 * diff(h / 2) - diff(h)) / 3)
    J = np.stack(cols, axis=1)
    w = np.ones(J.shape[0]) if weights is None else weights
    F = J.T @ (w[:, None] * J) / sigma ** 2
    return np.sqrt(np.diag(np.linalg.inv(F)))


def _phantom_fits():
    """(command, model, noise-free phantom, mask) of every model with a phantom and a least-squares method
    fitting its declared parameters."""
    out = []
    for command, cls in COMMANDS.items():
        if not cls.has_phantom():
            continue
        ph = cls.phantom(snr=np.inf)
        seen = set()
        for label, model, data, mask, _ in cls.demo.cases(ph):
            lsq = type(model).methods.get("lsq")
            if id(model) in seen or lsq is None or not lsq.gives_parameters:  # full-tensor DKI: derived maps only
                continue
            seen.add(id(model))
            out.append(pytest.param(command, model, ph, data, mask, id=f"{command}-{label}"))
    return out


@pytest.mark.parametrize("command,model,ph,data,mask", _phantom_fits())
def test_crlb_maps_equal_a_finite_difference_fisher_computation(command, model, ph, data, mask):
    """On each model's noise-free phantom fitted by lsq with a known σ, the written CRLB of every
    parameter equals the finite-difference Fisher bound at the true values to 1e-6 (relative)."""
    sigma = 0.02 * float(np.nanmax(np.abs(data)))
    maps = model.fit(data, mask=mask, method="lsq", crlb=True, sigma=sigma)
    names = model.spec.names
    assert set(maps.crlb) == set(names)
    assert all(maps.units[f"{k}_crlb"] == model.output_units()[k] for k in names)
    rng = np.random.default_rng(0)
    voxels = rng.choice(np.argwhere(mask), 6, replace=False)
    C = None
    checked = 0
    for v in map(tuple, voxels):
        truth = np.array([ph.truth[k][v] if k in ph.truth and np.isfinite(ph.truth[k][v]) else maps[k][v]
                          for k in names])
        if model.amplitude:
            # the phantom's amplitude truth is the fitted one (noise-free: the fit is exact)
            truth[names.index(model.amplitude)] = maps[model.amplitude][v]
        ref = fd_crlb(model.spec, model.acq, truth, sigma, C=C)
        got = np.array([maps.crlb[k][v] for k in names])
        fitted = np.array([maps[k][v] for k in names])
        # at the fitted values (noise-free, exact recovery) the bound is the one at the truth
        assert np.allclose(fitted, truth, rtol=1e-5, atol=1e-12), (command, v)
        np.testing.assert_allclose(got, ref, rtol=1e-6, err_msg=f"{command} voxel {v}")
        checked += 1
    assert checked == 6


def test_rician_fisher_factor_matches_quadrature():
    """g(a) of the kernel (tabulated, interpolated, asymptotic above 50) against scipy's adaptive
    quadrature of the squared Rician score, and its limits (0 at a = 0, → 1 at high SNR)."""
    from scipy import integrate
    from scipy.special import i0e, i1e

    def score_squared(a):
        # ∫ (d/dA log p(x; A, 1))² p dx, score = -a + x I1(ax)/I0(ax)
        def integrand(x):
            return (-a + x * i1e(a * x) / i0e(a * x)) ** 2 * x * np.exp(-0.5 * (x - a) ** 2) * i0e(a * x)
        return integrate.quad(integrand, 0, a + 40, limit=400, epsabs=1e-13, epsrel=1e-12)[0]

    a = np.array([0.0, 0.05, 0.3, 0.9, 1.7, 2.5, 4.0, 7.3, 13.0, 31.0, 49.9, 50.0, 75.0, 300.0])
    ref = np.array([score_squared(x) for x in a])
    np.testing.assert_allclose(rician_factor(a), ref, atol=1e-9)
    # the kernel's bounds for S = S0 exp(-b ADC) at b = 0 and 1000: F = JᵀWJ with W from the quadrature
    model = ADC([0.0, 1000.0])
    spec, sigma = model.spec, 1.0
    P = np.array([[x, 1e-3] for x in a[a > 0]])
    got = crlb(spec, model.acq, P, sigma, noise="rician")
    for row, (s0, adc) in zip(got, P):
        s1 = s0 * np.exp(-1000 * adc)
        gw = np.array([score_squared(s0), score_squared(s1)])
        np.testing.assert_allclose(row, fd_crlb(spec, model.acq, [s0, adc], sigma, weights=gw), rtol=1e-6)
    assert rician_factor([0.0])[0] == pytest.approx(0.0, abs=1e-12)
    assert rician_factor([100.0])[0] == pytest.approx(1 - 0.5 / 100 ** 2, abs=1e-8)


def test_rician_bound_exceeds_the_gaussian_one_at_low_snr_and_meets_it_at_high():
    model = IVIM([0, 10, 20, 50, 100, 200, 400, 600, 800, 1000])
    P = np.array([[1.0, 0.1, 1e-3, 0.05]])
    for snr, lo, hi in ((3, 1.02, np.inf), (500, 1 - 1e-5, 1 + 1e-5)):
        g = crlb(model.spec, model.acq, P, 1 / snr)
        r = crlb(model.spec, model.acq, P, 1 / snr, noise="rician")
        assert np.all(r / g > lo) and np.all(r / g < hi), (snr, r / g)


def test_sigma_from_residuals_and_failed_voxels():
    """Without --sigma the noise level is each voxel's rmse·sqrt(m/(m−p)); a failed voxel has NaN bounds;
    a singular Fisher matrix (f = 0: D* undetermined) gives NaN."""
    bvals = np.array([0, 10, 20, 50, 100, 200, 400, 600, 800, 1000.0])
    model = IVIM(bvals)
    rng = np.random.default_rng(1)
    clean = model.spec.evaluate(np.array([[1000.0, 0.12, 1.1e-3, 0.04]] * 50), model.acq)
    Y = clean + rng.normal(0, 20, clean.shape)
    Y[3] = np.nan
    maps = model.fit(Y, method="lsq", crlb=True)
    m, p = bvals.size, 4
    s = maps["rmse"] * np.sqrt(m / (m - p))
    P = np.stack([maps[k] for k in model.spec.names], axis=1)
    ok = np.isfinite(s)
    ref = crlb(model.spec, model.acq, P[ok], s[ok])
    np.testing.assert_allclose(np.stack([maps.crlb[k][ok] for k in model.spec.names], axis=1), ref, rtol=1e-12)
    assert maps["status"][3] == 2 and all(np.isnan(maps.crlb[k][3]) for k in model.spec.names)
    single = crlb(model.spec, model.acq, np.array([[1000.0, 0.0, 1e-3, 0.05]]), 10.0)
    assert np.isnan(single).all()
    # a noise map: one value per voxel
    sig = np.full(50, 20.0)
    sig[:25] = 40.0
    maps2 = model.fit(Y, method="lsq", crlb=True, sigma=sig)
    ratio = maps2.crlb["D"][:25] / crlb(model.spec, model.acq, P[:25], 20.0)[:, 2]
    np.testing.assert_allclose(ratio[np.isfinite(ratio)], 2.0, rtol=1e-12)
    # a voxel without a noise level in the map has no bound (never the residuals instead)
    sig[7] = np.nan
    maps3 = model.fit(Y, method="lsq", crlb=True, sigma=sig)
    assert all(np.isnan(maps3.crlb[k][7]) for k in model.spec.names)
    assert np.isfinite(maps3.crlb["D"][8])


def test_every_method_giving_the_parameters_offers_crlb():
    """segmented IVIM, ADC wls and the DCE linear estimate: bounds at their own fitted values."""
    ph = IVIM.phantom(snr=30, block=(2, 2, 1))
    model = IVIM.for_phantom(ph)
    maps = model.fit(ph.data, mask=ph.mask, method="segmented", crlb=True, sigma=1000 / 30)
    P = np.stack([maps[k][ph.mask] for k in model.spec.names], axis=1)
    ref = crlb(model.spec, model.acq, P, 1000 / 30)
    np.testing.assert_allclose(np.stack([maps.crlb[k][ph.mask] for k in model.spec.names], axis=1), ref, rtol=1e-12)
    for cls in (DCE, ADC):
        assert all(any(o.name == "crlb" for o in m.options) for m in cls.methods.values())


def test_cli_writes_crlb_maps_with_sidecars(tmp_path, capsys):
    ph, out = tmp_path / "ph", tmp_path / "fit"
    assert main(["phantom", "ivim", "--out-dir", str(ph), "--snr", "40", "--block", "2", "2", "1"]) == 0
    assert main(["ivim", str(ph / "ivim.nii.gz"), "--bval", str(ph / "ivim.bval"), "--mask", str(ph / "mask.nii.gz"),
                 "--out-dir", str(out), "--crlb", "--noise", "rician", "--quiet"]) == 0
    for k, unit in (("S0", "a.u."), ("f", ""), ("D", "mm2/s"), ("Dstar", "mm2/s")):
        side = json.loads((out / f"{k}_crlb.json").read_text())
        assert side["Kind"] == "crlb" and side["Units"] == unit and side["Parameter"] == f"{k}_crlb"
        assert side["MethodOptions"]["noise"] == "rician" and "Karlsen" in side["CrlbReference"]
        assert np.isfinite(nib.load(out / f"{k}_crlb.nii.gz").get_fdata()).any()
    back = ParameterMaps.load(out)
    assert set(back.crlb) == {"S0", "f", "D", "Dstar"}
    # a noise map on the series' grid
    noise = tmp_path / "sigma.nii.gz"
    img = nib.load(ph / "mask.nii.gz")
    nib.save(nib.Nifti1Image(np.full(img.shape, 25.0, np.float32), img.affine), noise)
    assert main(["ivim", str(ph / "ivim.nii.gz"), "--bval", str(ph / "ivim.bval"), "--mask", str(ph / "mask.nii.gz"),
                 "--out-dir", str(tmp_path / "fit2"), "--crlb", "--sigma", str(noise), "--quiet"]) == 0
    side = json.loads((tmp_path / "fit2" / "D_crlb.json").read_text())
    assert side["NoiseMap"] == str(noise) and side["CrlbNoiseLevel"] == "a noise map"
    capsys.readouterr()


@pytest.mark.parametrize("extra,message", [
    (["--sigma", "-1"], "--sigma: the noise level must be a positive number or a noise map"),
    (["--sigma", "nothere.nii.gz"], "nothere.nii.gz"),
    (["--noise", "poisson"], "invalid choice: 'poisson'"),
])
def test_bad_crlb_options_are_one_line_errors(tmp_path, capsys, extra, message):
    ph = tmp_path / "ph"
    assert main(["phantom", "adc", "--out-dir", str(ph), "--block", "2", "2", "1"]) == 0
    capsys.readouterr()
    argv = ["adc", str(ph / "adc.nii.gz"), "--bval", str(ph / "adc.bval"), "--out-dir", str(tmp_path / "fit"),
            "--crlb", *extra]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own checks (choices)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "fit").exists()


def test_full_tensor_dki_says_it_has_no_crlb_maps():
    from qmri.errors import QMRIInputError
    from qmri.models import DKI

    ph = DKI.phantom(snr=np.inf, block=(1, 1, 1))
    model = DKI.for_phantom(ph)
    with pytest.raises(QMRIInputError, match="does not use option 'crlb'"):
        model.fit(ph.data, method="wls", crlb=True)
    with pytest.raises(QMRIInputError, match="--trace"):
        model.output_names("dnn", crlb=True)


@pytest.mark.slow
def test_lsq_spread_approaches_the_crlb_at_high_snr():
    """2000 Gaussian-noise realisations of 3 IVIM tissues at SNR 200, fitted by lsq: the SD of S0 and D
    is within 8 % of the CRLB (the SD's own sampling error is ~1.6 %) and the mean within 0.1 CRLB + 4 standard
    errors of the truth (unbiased); the per-voxel maps agree with the bound at the truth within 2 %."""
    bvals = np.array([0, 10, 20, 30, 50, 80, 100, 150, 200, 300, 400, 500, 600, 700, 800, 900, 1000.0])
    model = IVIM(bvals)
    rng = np.random.default_rng(2026)
    for truth in ([1000.0, 0.10, 1.0e-3, 0.05], [1000.0, 0.25, 1.5e-3, 0.03], [1000.0, 0.05, 0.8e-3, 0.02]):
        clean = model.spec.evaluate(np.array([truth] * 2000), model.acq)
        Y = clean + rng.normal(0, 1000 / 200, clean.shape)
        maps = model.fit(Y, method="lsq", crlb=True, sigma=1000 / 200)
        bound = crlb(model.spec, model.acq, np.array([truth]), 1000 / 200)[0]
        for j, k in enumerate(model.spec.names):
            if k not in ("S0", "D"):
                continue
            est = maps[k]
            assert np.all(np.isfinite(est))
            sd = est.std(ddof=1)
            assert abs(sd / bound[j] - 1) < 0.08, (truth, k, sd, bound[j])
            assert abs(est.mean() - truth[j]) < 0.1 * bound[j] + 4 * sd / np.sqrt(est.size), (truth, k)
            # the per-voxel maps (at each fit's own values) agree with the bound at the truth
            assert abs(np.median(maps.crlb[k]) / bound[j] - 1) < 0.02


def test_bids_names_of_crlb_maps(tmp_path, capsys):
    import shutil

    from test_bids_outputs import check_name

    assert main(["phantom", "ivim", "--out-dir", str(tmp_path / "ph"), "--block", "2", "2", "1"]) == 0
    dwi = tmp_path / "ds" / "sub-01" / "dwi"
    dwi.mkdir(parents=True)
    (tmp_path / "ds" / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.11.0"}')
    shutil.copy(tmp_path / "ph" / "ivim.nii.gz", dwi / "sub-01_dwi.nii.gz")
    shutil.copy(tmp_path / "ph" / "ivim.bval", dwi / "sub-01_dwi.bval")
    deriv = tmp_path / "ds" / "derivatives" / "qmri"
    assert main(["ivim", str(dwi / "sub-01_dwi.nii.gz"), "--out-dir", str(deriv), "--crlb", "--quiet"]) == 0
    folder = deriv / "sub-01" / "dwi"
    names = sorted(p.name for p in folder.iterdir())
    assert "sub-01_model-ivim_param-Dstar_desc-crlb_dwimap.nii.gz" in names
    for name in names:
        check_name(name)
    back = ParameterMaps.load(folder)
    assert set(back.crlb) == {"S0", "f", "D", "Dstar"} and back.units["D_crlb"] == "mm^2/s"
    capsys.readouterr()


@pytest.mark.parametrize("label", ["DKI trace", "VFA T1"])
def test_crlb_of_models_without_a_phantom_equals_finite_differences(label):
    """Trace DKI and VFA T1 (no phantom): noise-free simulated voxels fitted by least squares with a known σ."""
    from qmri.validation import coverage

    model, method, _ = coverage.models()[label]
    truth = coverage.simulate(model, label, 50, 5, 1, 0)[0]  # the parameter sets (the noisy signals unused)
    Y = model.spec.evaluate(truth, model.acq)
    sigma = 0.02 * float(np.abs(Y).max())
    maps = model.fit(Y, method=method, crlb=True, sigma=sigma)
    for v in range(truth.shape[0]):
        fitted = np.array([maps[k][v] for k in model.spec.names])
        np.testing.assert_allclose(fitted, truth[v], rtol=1e-5)
        got = np.array([maps.crlb[k][v] for k in model.spec.names])
        np.testing.assert_allclose(got, fd_crlb(model.spec, model.acq, fitted, sigma), rtol=1e-6)
