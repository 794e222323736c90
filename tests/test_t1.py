"""VFA T1 mapping: every OSIPI T1 case (QIBA DRO, brain, prostate; :mod:`qmri.validation.osipi_t1`, as
``qmri validate`` runs them), exact recovery, B1, errors."""

import numpy as np
import pytest
from conftest import case_params, check_case

from qmri.errors import QMRIInputError
from qmri.fitting import STATUS_CONVERGED, STATUS_FAILED
from qmri.models import VFA
from qmri.validation import osipi_t1

METHODS = ["linear", "lsq"]


@pytest.mark.parametrize("case", case_params(osipi_t1.cases()))
def test_osipi_t1_case(case):
    check_case(case)


# --- synthetic --------------------------------------------------------------------------------

FA = [2.0, 5.0, 10.0, 15.0, 20.0]
TR = 0.005


def _volume(rng, shape=(5, 4, 3)):
    t1 = rng.uniform(0.2, 3.0, shape)
    m0 = rng.uniform(500, 5000, shape)
    b1 = rng.uniform(0.7, 1.3, shape)
    return t1, m0, b1


@pytest.mark.parametrize("method", METHODS)
def test_noise_free_recovery_with_b1_map_and_mask(method):
    rng = np.random.default_rng(7)
    t1, m0, b1 = _volume(rng)
    # B1 on the grouping grid so that the nonlinear fit is exact too
    b1 = np.round(b1, 3)
    model = VFA(FA, TR, b1=b1)
    data = model.signal(dict(M0=m0, T1=t1), b1=b1)
    mask = rng.random(t1.shape) > 0.3
    maps = model.fit(data, mask=mask, method=method)
    np.testing.assert_allclose(maps["T1"][mask], t1[mask], rtol=1e-6)
    np.testing.assert_allclose(maps["M0"][mask], m0[mask], rtol=1e-6)
    assert np.all(np.isnan(maps["T1"][~mask]))
    assert np.all(maps["status"][mask] == STATUS_CONVERGED)
    assert maps.units["T1"] == "s"


def test_ignoring_b1_biases_t1():
    """A 20 % flip-angle error left uncorrected changes T1 by far more than the tolerance."""
    model = VFA(FA, TR)
    sig = model.signal(dict(M0=1000.0, T1=1.0), b1=1.2)
    t1_nominal = model.fit(sig[None], method="lsq")["T1"][0]
    t1_corrected = VFA(FA, TR, b1=1.2).fit(sig[None], method="lsq")["T1"][0]
    assert t1_corrected == pytest.approx(1.0, rel=1e-6)
    assert abs(t1_nominal - 1.0) > 0.3


def test_continuous_b1_map_is_exact_per_voxel():
    """B1 is a per-voxel covariate of the fit: continuous (unrounded) B1 values, noise-free data,
    T1 recovered to 1e-6 and equal to fitting each voxel alone with its scalar B1."""
    rng = np.random.default_rng(11)
    t1, m0, b1 = _volume(rng)
    model = VFA(FA, TR, b1=b1)
    data = model.signal(dict(M0=m0, T1=t1), b1=b1)
    maps = model.fit(data, method="lsq")
    np.testing.assert_allclose(maps["T1"], t1, rtol=1e-6)
    for idx in [(0, 0, 0), (3, 2, 1), (1, 2, 0)]:
        alone = VFA(FA, TR, b1=float(b1[idx])).fit(data[idx][None], method="lsq")["T1"][0]
        assert alone == pytest.approx(maps["T1"][idx], rel=1e-9)


def test_nonlinear_is_unbiased_and_more_precise_than_linear_in_noise():
    rng = np.random.default_rng(5)
    n = 4000
    model = VFA([3, 6, 9, 15, 24, 35], 0.005)
    clean = model.signal(dict(M0=np.full(n, 10000.0), T1=np.full(n, 1.0)))
    noisy = clean + rng.normal(0, 20.0, clean.shape)
    lin = model.fit(noisy, method="linear")["T1"]
    nl = model.fit(noisy, method="lsq")["T1"]
    assert abs(np.median(nl) - 1.0) < 0.01
    assert np.std(nl) < np.std(lin)


def test_per_flip_angle_tr_needs_nonlinear():
    tr = [0.005, 0.005, 0.008, 0.008]
    model = VFA([3, 8, 12, 20], tr)
    sig = model.signal(dict(M0=800.0, T1=0.9))
    assert model.fit(sig[None], method="lsq")["T1"][0] == pytest.approx(0.9, rel=1e-6)
    with pytest.raises(QMRIInputError, match="one TR"):
        model.fit(sig[None], method="linear")


@pytest.mark.parametrize("method", METHODS)
def test_bad_voxels_fail_cleanly(method):
    model = VFA(FA, TR)
    good = model.signal(dict(M0=1000.0, T1=1.0))
    data = np.stack([good, np.zeros(5), np.full(5, np.nan), good])
    maps = model.fit(data, method=method)
    assert list(maps["status"]) == [STATUS_CONVERGED, STATUS_FAILED, STATUS_FAILED, STATUS_CONVERGED]
    assert np.isnan(maps["T1"][1]) and np.isnan(maps["T1"][2])


def test_nonlinear_starts_without_a_linear_solution():
    """Signals ∝ tan(α) make the DESPOT1 line vertical (linear fit fails); the LM fit still runs
    from the fallback start and stays inside the bounds."""
    model = VFA(FA, TR)
    sig = 100.0 * np.tan(np.deg2rad(FA))
    lin = model.fit(sig[None], method="linear")
    assert lin["status"][0] == STATUS_FAILED
    nl = model.fit(sig[None], method="lsq")
    assert nl["status"][0] != STATUS_FAILED
    assert model.lower[1] <= nl["T1"][0] <= model.upper[1]


def test_invalid_b1_voxels_fail():
    model = VFA(FA, TR, b1=np.array([1.0, 0.0, np.nan]))
    sig = model.signal(dict(M0=1000.0, T1=1.0))
    maps = model.fit(np.stack([sig] * 3), method="lsq")
    assert maps["status"][0] == STATUS_CONVERGED
    assert np.all(maps["status"][1:] == STATUS_FAILED)


@pytest.mark.parametrize("kwargs, message", [
    (dict(fa_deg=[10.0], tr=TR), "at least 2 flip angles"),
    (dict(fa_deg=[10.0, 10.0], tr=TR), "distinct"),
    (dict(fa_deg=[0.0, 10.0], tr=TR), r"\(0, 180\)"),
    (dict(fa_deg=[5.0, 10.0], tr=0.0), "positive"),
    (dict(fa_deg=[5.0, 10.0], tr=5.0), "seconds"),
    (dict(fa_deg=[5.0, 10.0], tr=[0.005, 0.005, 0.005]), "one TR"),
    (dict(fa_deg=[5.0, 10.0], tr=TR, b1=-1.0), "B1"),
])
def test_constructor_errors(kwargs, message):
    with pytest.raises(QMRIInputError, match=message):
        VFA(**kwargs)


def test_fit_errors():
    model = VFA(FA, TR, b1=np.ones((2, 2)))
    with pytest.raises(QMRIInputError, match="B1 map shape"):
        model.fit(np.ones((3, 2, 5)))
    with pytest.raises(QMRIInputError, match="measurements"):
        model.fit(np.ones((2, 2, 4)))
