"""The 95 % intervals of the least-squares fits (``--interval``): what they are, and their coverage on
simulations (the ``coverage`` validation suite, one test per case; misses are strict expected failures)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from qmri.models import ADC, IVIM
from qmri.validation import coverage

from conftest import case_params, check_case


def test_interval_is_the_estimate_plus_minus_t_times_se():
    model = ADC([0, 100, 300, 500, 800, 1000])
    rng = np.random.default_rng(3)
    Y = model.spec.evaluate(np.array([[1000.0, 1.2e-3]] * 20), model.acq) + rng.normal(0, 30, (20, 6))
    maps = model.fit(Y, method="lsq", interval=True, compute_se=True)
    t = stats.t.ppf(0.975, 6 - 2)
    for k in ("S0", "ADC"):
        np.testing.assert_allclose(maps[f"{k}_hi"] - maps[k], t * maps.se[k], rtol=1e-12)  # far from the bounds
        np.testing.assert_allclose(maps[k] - maps[f"{k}_lo"], t * maps.se[k], rtol=1e-12)
        assert maps.units[f"{k}_lo"] == maps.units[k]
    # without --se the interval maps come alone
    alone = model.fit(Y, method="lsq", interval=True)
    assert not alone.se and "ADC_lo" in alone and "ADC_se" not in alone
    assert "ADC_lo" in model.output_names("lsq", interval=True)


def test_bootstrap_intervals():
    """--bootstrap N: percentiles of N refits; at high SNR they agree with the t interval; it needs --interval."""
    from qmri.errors import QMRIInputError

    model = ADC([0, 100, 300, 500, 800, 1000])
    rng = np.random.default_rng(4)
    Y = model.spec.evaluate(np.array([[1000.0, 1.2e-3]] * 200), model.acq) + rng.normal(0, 10, (200, 6))
    boot = model.fit(Y, method="lsq", interval=True, bootstrap=100)
    t = model.fit(Y, method="lsq", interval=True)
    for k in ("S0", "ADC"):
        assert np.all(boot[f"{k}_lo"] < boot[k]) and np.all(boot[k] < boot[f"{k}_hi"])
        ratio = (boot[f"{k}_hi"] - boot[f"{k}_lo"]) / (t[f"{k}_hi"] - t[f"{k}_lo"])
        # bootstrap percentiles use the normal spread (1.96), the t interval t(0.975, 4) = 2.78
        assert 0.6 < np.median(ratio) < 0.8, np.median(ratio)
    with pytest.raises(QMRIInputError, match="add --interval"):
        model.fit(Y, method="lsq", bootstrap=100)
    with pytest.raises(QMRIInputError, match="at least 20"):
        model.output_names("lsq", interval=True, bootstrap=5)


def test_intervals_are_limited_to_the_bounds():
    ph = IVIM.phantom(snr=15, block=(3, 3, 1))
    model = IVIM.for_phantom(ph)
    maps = model.fit(ph.data, mask=ph.mask, method="lsq", interval=True, compute_se=True)
    t = stats.t.ppf(0.975, model.n_measurements - 4)
    m = ph.mask & np.isfinite(maps["Dstar_se"])
    j = model.spec.names.index("Dstar")
    assert np.any(maps["Dstar"][m] - t * maps["Dstar_se"][m] < model.lower[j])  # the raw interval would cross
    assert np.all(maps["Dstar_lo"][m] >= model.lower[j]) and np.all(maps["Dstar_hi"][m] <= model.upper[j])
    inside = m & (maps["Dstar"] - t * maps["Dstar_se"] > model.lower[j])
    np.testing.assert_allclose(maps["Dstar_lo"][inside], (maps["Dstar"] - t * maps["Dstar_se"])[inside])


def test_failed_voxels_have_no_interval():
    model = IVIM([0, 10, 20, 50, 100, 200, 400, 800])
    Y = np.ones((3, 8))
    Y[1] = np.nan
    maps = model.fit(Y, method="lsq", interval=True)
    assert maps["status"][1] == 2 and np.isnan(maps["D_lo"][1]) and np.isnan(maps["D_hi"][1])


def test_suite_declares_every_model_method_parameter_and_snr():
    cases = coverage.cases()
    n = sum(len(p) * len(coverage.methods(label)) for label, p in coverage.PRIORS.items()) * 3
    assert len({c.id for c in cases}) == len(cases) == n
    declared = {(label, method, name, snr) for label, names in coverage.PRIORS.items()
                for method in coverage.methods(label) for name in names for snr in coverage.SNRS}
    assert set(coverage.EXPECTED_FAILURES) <= declared


def test_dnn_interval_adds_the_bound_to_the_ensemble_spread():
    """dnn --interval: estimate ± 1.96 sqrt(SD² + CRLB²), the bound from the residuals and the training noise."""
    from qmri.fitting.net.method import Z95

    ph = ADC.phantom(snr=30, block=(2, 2, 1))
    model = ADC.for_phantom(ph)
    maps = model.fit(ph.data, mask=ph.mask, method="dnn", weights="builtin", interval=True)
    bound = model.fit(ph.data, mask=ph.mask, method="dnn", weights="builtin", crlb=True, noise="rician")
    m = ph.mask
    for k in ("S0", "ADC"):
        half = Z95 * np.sqrt(maps[f"{k}_sd"][m] ** 2 + bound.crlb[k][m] ** 2)
        np.testing.assert_allclose(maps[f"{k}_hi"][m] - maps[k][m], half, rtol=1e-10)
        np.testing.assert_allclose(maps[k][m] - maps[f"{k}_lo"][m], half, rtol=1e-10)
    assert not maps.crlb  # the bound is not written unless --crlb is given


def _cases():
    params = case_params(coverage.cases())
    # the dnn cases load torch and the shipped networks, the bootstrap ones refit 200 times: slow
    return [pytest.param(*p.values, id=p.id, marks=[*p.marks, pytest.mark.slow])
            if "-dnn-" in p.id or "-bootstrap-" in p.id else p for p in params]


@pytest.mark.parametrize("case", _cases())
def test_coverage_case(case):
    check_case(case)
