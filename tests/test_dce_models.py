"""DCE pharmacokinetic models: OSIPI DCE code-collection reference cases (:mod:`qmri.validation.osipi_dce`,
as ``qmri validate`` runs them), exact convolution, recovery, delay sign."""

import numpy as np
import pytest
from scipy.integrate import quad

from conftest import case_params, check_case, external
from qmri.errors import QMRIInputError
from qmri.models.dce.aif import shift
from qmri.models.dce import DCE
from qmri.models.dce.convolution import acquisition, expconv
from qmri.models.dce.models import DCE_MODELS, example_aif
from qmri.validation import osipi_dce


@pytest.mark.parametrize("case", case_params(osipi_dce.cases()))
def test_osipi_reference_case(case):
    check_case(case)


def test_every_osipi_file_is_used():
    files = sorted(p.name for p in external(*osipi_dce.DATA).glob("*.csv"))
    assert files == sorted(f[0] for f in osipi_dce.FILES)
    assert all(len(osipi_dce.rows(f)) > 0 for f in files)


# ---------------------------------------------------------------------------------------------
# Exact convolution
# ---------------------------------------------------------------------------------------------
def _random_grid(rng, n=40):
    return np.concatenate([[0.0], np.cumsum(rng.uniform(0.5, 9.0, n - 1))])


@pytest.mark.parametrize("k", [0.0, 1e-4, 0.03, 0.7, 5.0, 80.0])
@pytest.mark.parametrize("delay_s", [0.0, 3.7, -6.2])
def test_convolution_is_exact_for_piecewise_linear_input(k, delay_s):
    rng = np.random.default_rng(3)
    t = _random_grid(rng)
    c = rng.uniform(0.0, 5.0, t.size)
    c[0] = 0.0
    F = np.zeros(t.size)
    cp = np.zeros(t.size)
    acq = acquisition(t, c)
    expconv(acq[2], c, acq[3], acq[4], k, delay_s / 60.0, 1.0, F, 0.0, F, 1.0, cp, 0.0, F)
    tm = t / 60.0

    def cp_at(u):  # piecewise linear, 0 before the first sample, held after the last
        return 0.0 if u < tm[0] else float(np.interp(u, tm, c))

    for i in range(0, t.size, 3):
        tau = tm[i] - delay_s / 60.0
        if tau <= tm[0]:
            assert F[i] == 0.0
            continue
        knots = [u for u in tm if u < tau]
        ref = quad(lambda u: cp_at(u) * np.exp(-k * (tau - u)), tm[0], tau, points=knots, limit=200,
                   epsabs=1e-13, epsrel=1e-12)[0]
        assert F[i] == pytest.approx(ref, rel=1e-9, abs=1e-12)
        assert cp[i] == pytest.approx(cp_at(tau), rel=1e-12, abs=1e-14)


def test_convolution_matches_closed_form_for_a_ramp():
    # Cp(t) = t (min): F(τ) = τ/k - (1 - exp(-kτ))/k², on a non-uniform grid
    rng = np.random.default_rng(4)
    t = _random_grid(rng, 60)
    k = 0.8
    F = np.zeros(t.size)
    acq = acquisition(t, t / 60.0)
    expconv(acq[2], t / 60.0, acq[3], acq[4], k, 0.0, 1.0, F, 0.0, F, 0.0, F, 0.0, F)
    tau = t / 60.0
    np.testing.assert_allclose(F, tau / k - (1.0 - np.exp(-k * tau)) / k ** 2, rtol=1e-11, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# Recovery, non-uniform times, delay sign, derived kep
# ---------------------------------------------------------------------------------------------
TRUTH = {
    "tofts": dict(Ktrans=0.25, ve=0.35),
    "etm": dict(Ktrans=0.12, ve=0.25, vp=0.04),
    "patlak": dict(Ktrans=0.03, vp=0.08),
    "2cxm": dict(Fp=40.0, PS=0.12, ve=0.2, vp=0.06),
    "2cum": dict(Fp=25.0, PS=0.04, vp=0.05),
    "aath": dict(Fp=40.0, PS=0.12, ve=0.2, vp=0.06),
}


def _nonuniform_times():
    return np.concatenate([np.arange(0.0, 20.0, 4.0), np.arange(20.0, 80.0, 1.3), 80.0 + np.cumsum(np.linspace(2, 12, 25))])


@pytest.mark.parametrize("model", sorted(TRUTH))
def test_noise_free_recovery_on_nonuniform_times(model):
    t = _nonuniform_times()
    m = DCE(t, example_aif(t), model)
    c = m.concentration(TRUTH[model])
    maps = m.fit(np.stack([c, 0.5 * c]), method="lsq")
    for k, v in TRUTH[model].items():
        assert maps[k][0] == pytest.approx(v, rel=1e-4), k
    assert np.all(maps["status"] == 0)
    assert maps["r2"][0] == pytest.approx(1.0, abs=1e-9)
    if model in ("tofts", "etm"):
        np.testing.assert_allclose(maps["kep"], maps["Ktrans"] / maps["ve"])
        assert maps.units["kep"] == "1/min"


@pytest.mark.parametrize("true_delay", [4.0, -3.0])
def test_delay_is_positive_when_tissue_arrives_later(true_delay):
    # tissue made with an AIF that is itself shifted by `true_delay` (independent of the model's delay code)
    t = np.arange(0.0, 300.0, 1.0)
    cp = example_aif(t)
    tissue = DCE(t, shift(t, cp, true_delay), "tofts").concentration(TRUTH["tofts"])
    maps = DCE(t, cp, "tofts", fit_delay=True).fit(tissue[None])
    assert maps["delay"][0] == pytest.approx(true_delay, abs=0.05)
    assert maps["Ktrans"][0] == pytest.approx(TRUTH["tofts"]["Ktrans"], rel=1e-3)


def test_linear_method_is_close_without_noise():
    t = np.arange(0.0, 300.0, 2.0)
    m = DCE(t, example_aif(t), "tofts")
    c = m.concentration(TRUTH["tofts"])
    maps = m.fit(c[None], method="linear")
    assert maps["Ktrans"][0] == pytest.approx(0.25, rel=0.02)
    assert maps["n_iter"][0] == 0


@pytest.mark.parametrize("method", ["lsq", "linear"])
def test_failed_voxels_are_nan(method):
    t = np.arange(0.0, 100.0, 2.0)
    m = DCE(t, example_aif(t), "tofts")
    Y = np.stack([m.concentration(TRUTH["tofts"]), np.full(t.size, np.nan), np.zeros(t.size)])
    maps = m.fit(Y, method=method)
    assert maps["status"][0] == 0 and maps["status"][1] == 2 and maps["status"][2] == 2
    assert np.isnan(maps["Ktrans"][1]) and np.isnan(maps["kep"][2])


@pytest.mark.parametrize("t,aif,model,msg", [
    (np.array([0.0, 2.0, 1.0, 3.0]), np.zeros(4), "tofts", "strictly increasing"),
    (np.arange(5.0), np.zeros(4), "tofts", "AIF has 4 samples"),
    (np.arange(5.0), np.zeros(5), "kety", "unknown DCE model"),
    (np.array([0.0, 1.0, np.nan, 3.0]), np.zeros(4), "tofts", "finite"),
])
def test_bad_inputs_raise(t, aif, model, msg):
    with pytest.raises(QMRIInputError, match=msg):
        DCE(t, aif, model)


@pytest.mark.parametrize("key", sorted(DCE_MODELS, key=str))
def test_torch_autograd_matches_analytic_jacobian(key):
    # the network estimators train through the torch twin: its gradients must be the Jacobian
    torch = pytest.importorskip("torch")
    spec = DCE_MODELS[key]
    acq = spec.example_acquisition()
    rng = np.random.default_rng(5)
    p = spec.lower + (spec.upper - spec.lower) * (0.2 + 0.6 * rng.random(spec.n_params))
    P = torch.tensor(p[None], dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda x: spec.torch_signal(x, torch.as_tensor(acq))[0], P)[:, 0, :]
    np.testing.assert_allclose(jac.numpy(), spec.jacobian_at(p, acq), rtol=1e-7, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# The AIF on its own grid
# ---------------------------------------------------------------------------------------------
def _continuous_etm(t, truth, aif):
    """Extended Tofts tissue curve at times ``t`` (s) for a continuous AIF, by adaptive quadrature."""
    kep = truth["Ktrans"] / truth["ve"] / 60.0  # 1/s
    out = []
    for ti in t - truth["delay"]:
        conv = quad(lambda u: aif(u) * np.exp(-kep * (ti - u)), 0.0, ti, limit=400, points=[20.0, 30.0],
                    epsabs=1e-12, epsrel=1e-11)[0] if ti > 0 else 0.0
        out.append(truth["vp"] * aif(ti) + truth["Ktrans"] / 60.0 * conv)
    return np.array(out)


def test_aif_keeps_its_own_time_resolution():
    """Frames every 3.4 s, an AIF known every 0.5 s, fast exchange and a fitted delay: on the AIF's own
    grid the fit recovers the continuous model's parameters (measured: Ktrans 0.3994, ve 0.0998, vp
    0.0501, delay 2.306 s; interpolated onto the frames, the AIF's peak was missed: Ktrans 0.359,
    ve 0.094, vp 0.056, delay 2.54 s)."""
    from qmri.models.dce.aif import parker
    from qmri.workflows import fit_dce

    truth = dict(Ktrans=0.4, ve=0.1, vp=0.05, delay=2.3)
    t = np.arange(0.0, 240.0, 3.4)
    conc = _continuous_etm(t, truth, lambda u: float(parker(u, delay=20.0)))
    ta = np.arange(0.0, 240.5, 0.5)
    maps = fit_dce(conc[None], t, (ta, parker(ta, delay=20.0)), model="etm", fit_delay=True, input="concentration")
    assert maps["Ktrans"][0] == pytest.approx(truth["Ktrans"], rel=5e-3)
    assert maps["ve"][0] == pytest.approx(truth["ve"], rel=5e-3)
    assert maps["vp"][0] == pytest.approx(truth["vp"], rel=1e-2)
    assert maps["delay"][0] == pytest.approx(truth["delay"], abs=0.05)


def test_thinned_aif_reproduces_every_sample_within_its_tolerance():
    from qmri.models.dce.aif import parker, population_samples, thin

    ta, ca = population_samples("parker", np.arange(0.0, 300.0, 3.4), delay=20.0)
    assert np.diff(ta).max() <= 0.34 + 1e-12 and 20.0 in ta
    np.testing.assert_allclose(ca, parker(ta, delay=20.0))
    rng = np.random.default_rng(0)
    for c, tol in ((ca, 1e-4 * ca.max()), (ca + rng.normal(0, 0.01, ca.size), 1e-3)):
        keep = thin(ta, c, tol)
        assert keep[0] == 0 and keep[-1] == ta.size - 1 and keep.size < ta.size
        assert np.max(np.abs(np.interp(ta, ta[keep], c[keep]) - c)) <= tol * (1 + 1e-12)
    full = DCE(np.arange(0.0, 300.0, 3.4), ca, "etm", aif_times=ta, aif_rtol=0.0)
    thinned = DCE(np.arange(0.0, 300.0, 3.4), ca, "etm", aif_times=ta)
    assert thinned.acq.shape[1] < full.acq.shape[1] / 2
    truth = dict(Ktrans=0.4, ve=0.1, vp=0.05)
    np.testing.assert_allclose(thinned.concentration(truth), full.concentration(truth), atol=1e-4 * ca.max())


def test_dce_and_the_file_workflow_check_frame_times_alike():
    """One check of frame times: the Python model refuses what the file workflow refuses, with the
    same message (times in ms spanning more than a day; a time that does not increase, 1-based)."""
    from qmri.workflows.dce import check_times

    t_ms = np.arange(0.0, 300.0, 2.0) * 1000.0
    t_bad = np.array([0.0, 2.0, 2.0, 6.0])
    for t in (t_ms, t_bad):
        with pytest.raises(QMRIInputError) as workflow:
            check_times(t, t.size)
        with pytest.raises(QMRIInputError) as model:
            DCE(t, example_aif(t), "tofts")
        assert str(model.value) == str(workflow.value)
    assert "more than a day" in str(pytest.raises(QMRIInputError, DCE, t_ms, example_aif(t_ms)).value)
    assert "time 3 (2 s) follows 2 s" in str(pytest.raises(QMRIInputError, DCE, t_bad, example_aif(t_bad)).value)
