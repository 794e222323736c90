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
        np.testing.assert_allclose(maps[f"{k}_hi"] - maps[k], t * maps.se[k], rtol=1e-12)
        np.testing.assert_allclose(maps[k] - maps[f"{k}_lo"], t * maps.se[k], rtol=1e-12)
        assert maps.units[f"{k}_lo"] == maps.units[k]
    # without --se the interval maps come alone
    alone = model.fit(Y, method="lsq", interval=True)
    assert not alone.se and "ADC_lo" in alone and "ADC_se" not in alone
    assert "ADC_lo" in model.output_names("lsq", interval=True)


def test_failed_voxels_have_no_interval():
    model = IVIM([0, 10, 20, 50, 100, 200, 400, 800])
    Y = np.ones((3, 8))
    Y[1] = np.nan
    maps = model.fit(Y, method="lsq", interval=True)
    assert maps["status"][1] == 2 and np.isnan(maps["D_lo"][1]) and np.isnan(maps["D_hi"][1])


def test_suite_declares_every_model_parameter_and_snr():
    cases = coverage.cases()
    assert len({c.id for c in cases}) == len(cases) == sum(len(p) for p in coverage.PRIORS.values()) * 3
    assert set(coverage.EXPECTED_FAILURES) <= {(c.group.rsplit(" ", 1)[0], c.group.rsplit(" ", 1)[1],
                                                int(c.id.rsplit("snr", 1)[1])) for c in cases}


@pytest.mark.parametrize("case", case_params(coverage.cases()))
def test_coverage_case(case):
    check_case(case)
