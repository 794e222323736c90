"""SPGR signal and signal ↔ concentration conversion, against OSIPI data
(:mod:`qmri.validation.osipi_concentration`, as ``qmri validate`` runs them) and exact identities."""

import numpy as np
import pytest
from conftest import case_params, check_case

from qmri.errors import QMRIInputError
from qmri.models.dce.relaxation import (
    concentration_to_signal,
    m0_from_baseline,
    signal_to_concentration,
    signal_to_r1,
    spgr_signal,
)
from qmri.validation import osipi_concentration


@pytest.mark.parametrize("case", case_params(osipi_concentration.cases()))
def test_signal_to_concentration_osipi(case):
    check_case(case)


def test_spgr_maximum_is_at_the_ernst_angle():
    t1, tr = 1.3, 0.006
    fa = np.linspace(0.5, 30, 5901)
    s = spgr_signal(1.0, t1, fa, tr)
    ernst = np.rad2deg(np.arccos(np.exp(-tr / t1)))
    assert abs(fa[np.argmax(s)] - ernst) < 0.01


def test_spgr_limits():
    # long TR: full recovery, S = M0 sin(alpha); small flip angle: S ~ M0 * alpha
    assert spgr_signal(2.0, 0.5, 30.0, 100.0) == pytest.approx(1.0)
    assert spgr_signal(1.0, 1.0, 0.01, 0.005) == pytest.approx(np.deg2rad(0.01), rel=1e-4)


def test_round_trip_concentration_signal_with_maps():
    rng = np.random.default_rng(3)
    shape = (4, 3)
    t = np.arange(40)
    C = np.where(t >= 5, 1.5 * (1 - np.exp(-(t - 5) / 6.0)), 0.0) * rng.uniform(0.2, 2.0, shape)[..., None]
    t10 = rng.uniform(0.4, 2.5, shape)
    fa = 15.0 * rng.uniform(0.8, 1.2, shape)  # B1-corrected flip-angle map
    M0 = rng.uniform(500, 2000, shape)
    S = concentration_to_signal(C, t10=t10, r1=3.9, tr=0.004, fa=fa, M0=M0)
    back = signal_to_concentration(S, t10=t10, r1=3.9, tr=0.004, fa=fa, n_baseline=5)
    np.testing.assert_allclose(back, C, atol=1e-9)
    np.testing.assert_allclose(signal_to_r1(S, M0=M0, tr=0.004, fa=fa), 1 / t10[..., None] + 3.9 * C, rtol=1e-9)
    np.testing.assert_allclose(m0_from_baseline(S[..., 0], t10=t10, tr=0.004, fa=fa), M0, rtol=1e-12)


def test_uninvertible_signal_gives_nan():
    # the largest possible SPGR signal is M0 sin(alpha) (R1 -> infinity)
    S = np.array([100.0, 100.0, 100.0, 1e6, 100.0])
    C = signal_to_concentration(S, t10=1.0, tr=0.005, fa=20.0, n_baseline=3)
    assert np.isnan(C[3])
    assert np.all(np.isfinite(np.delete(C, 3)))
    assert np.all(np.isnan(signal_to_concentration(np.zeros(5), t10=1.0, tr=0.005, fa=20.0, n_baseline=2)))


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_baseline=0), "baseline"),
    (dict(n_baseline=11), "baseline"),
    (dict(n_baseline=3, skip=3), "baseline"),
    (dict(n_baseline=3, tr=0.0), "TR"),
    (dict(n_baseline=3, fa=0.0), "flip angle"),
    (dict(n_baseline=3, r1=0.0), "relaxivity"),
    (dict(n_baseline=3, t10=np.ones(3)), "t10 map shape"),
])
def test_signal_to_concentration_errors(kwargs, message):
    args = dict(t10=1.0, tr=0.005, fa=15.0)
    args.update(kwargs)
    with pytest.raises(QMRIInputError, match=message):
        signal_to_concentration(np.ones((2, 10)), **args)
