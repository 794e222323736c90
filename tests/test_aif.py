"""Population AIFs against the OSIPI reference curves; AIF shifting, files and ROIs."""

import numpy as np
import pytest
from conftest import external
from osipi_csv import assert_within, curve_cases

from qmri.errors import QMRIInputError
from qmri.models import aif

DATA = ("osipi_dce", "test", "PopulationAIF_DCE", "data")
# OSIPI tolerances for population AIFs (test/PopulationAIF_DCE/popAIF_data.py): 1e-4 mM + 1 %.
A_TOL, R_TOL = 1e-4, 0.01
# OSIPI allows 0.1 mM + 10 % for the Parker curves with delay because implementations that
# resample a sampled curve differ there; the analytic delay below meets the 1e-4 + 1 % criterion.
A_TOL_RESAMPLED, R_TOL_RESAMPLED = 0.1, 0.1


@pytest.mark.parametrize("case", curve_cases(*DATA, "ParkerAIF_ref.csv"))
def test_parker_osipi(case):
    external(*DATA, "ParkerAIF_ref.csv")
    t = case["time"] * 60.0  # the reference file gives time in minutes
    # the reference holds whole blood (hct = 0 returns Cb unchanged)
    assert_within(aif.parker(t, hct=0.0, delay=case["delay"]), case["Cb"], A_TOL, R_TOL, case["label"])


@pytest.mark.parametrize("case", curve_cases(*DATA, "ParkerAIF_ref_with_delay.csv"))
def test_parker_with_delay_osipi(case):
    external(*DATA, "ParkerAIF_ref_with_delay.csv")
    t = case["time"] * 60.0
    assert_within(aif.parker(t, hct=0.0, delay=case["delay"]), case["Cb"], A_TOL, R_TOL, case["label"])


@pytest.mark.parametrize("case", curve_cases(*DATA, "ParkerAIF_ref_with_delay.csv"))
def test_shift_of_sampled_parker_osipi(case):
    """Delaying the sampled (undelayed) curve by interpolation: OSIPI's resampling tolerance."""
    external(*DATA, "ParkerAIF_ref_with_delay.csv")
    t = case["time"] * 60.0
    shifted = aif.shift(t, aif.parker(t, hct=0.0), case["delay"])
    assert_within(shifted, case["Cb"], A_TOL_RESAMPLED, R_TOL_RESAMPLED, case["label"])


# Georgiou et al. publish the curve itself (supplementary table, 0.1 s sampling; the OSIPI
# reference resamples it) and a functional form with parameters rounded to 2–4 digits (Table 3).
# qmri evaluates the functional form, which departs from the table by more than 1e-4 mM + 1 % on
# the up-slope (t = 0.7–6 s; up to +5 % of the still small early values) and around the first
# trough (t = 14–20 s); the largest absolute difference is 0.082 mM at t = 5.4 s (0.9 % of the
# 8.65 mM peak). Measured with hct = 0 (worst point relative to the tolerance):
_GEORGIOU_XFAIL = {
    "original_AIF": "114/3001 points; worst t=4.1 s: 4.2883 vs 4.2214 mM (+1.59 %)",
    "temp_res_0.5s": "23/600 points; worst t=4.0 s: 4.0574 vs 3.9928 mM (+1.62 %)",
    "temp_res_1.0s": "12/300 points; worst t=4.0 s: 4.0574 vs 3.9928 mM (+1.62 %)",
    "temp_res_2.0s": "6/150 points; worst t=4.0 s: 4.0574 vs 3.9928 mM (+1.62 %)",
    "temp_res_2.5s": "5/120 points; worst t=5.0 s: 6.2533 vs 6.1730 mM (+1.30 %)",
    "temp_res_5.0s": "3/60 points; worst t=5.0 s: 6.2533 vs 6.1730 mM (+1.30 %)",
    "temp_res_7.5s": "1/40 points; worst t=15.0 s: 2.6537 vs 2.6847 mM (-1.15 %)",
}
_GEORGIOU_MARKS = {
    label: pytest.mark.xfail(strict=True, reason=(
        "functional form with the rounded Table 3 parameters vs the published curve: " + measured))
    for label, measured in _GEORGIOU_XFAIL.items()
}


@pytest.mark.parametrize("case", curve_cases(*DATA, "GeorgiouAIF_ref.csv", marks=_GEORGIOU_MARKS))
def test_georgiou_osipi(case):
    external(*DATA, "GeorgiouAIF_ref.csv")
    t = case["time"] * 60.0
    assert_within(aif.georgiou(t, hct=0.0), case["Cb"], A_TOL, R_TOL, case["label"])


@pytest.mark.parametrize("case", curve_cases(*DATA, "preclinicalAIF_ref.csv"))
def test_preclinical_osipi(case):
    external(*DATA, "preclinicalAIF_ref.csv")
    # this reference file gives time in seconds
    assert_within(aif.preclinical(case["time"], delay=case["delay"]), case["Cb"], A_TOL, R_TOL, case["label"])


@pytest.mark.parametrize("case", curve_cases(*DATA, "preclinicalAIF_ref_delay.csv"))
def test_preclinical_with_delay_osipi(case):
    external(*DATA, "preclinicalAIF_ref_delay.csv")
    assert_within(aif.preclinical(case["time"], delay=case["delay"]), case["Cb"], A_TOL, R_TOL, case["label"])


# --- conventions ------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [aif.parker, aif.georgiou])
def test_plasma_is_blood_over_one_minus_hct(fn):
    t = np.linspace(0, 300, 121)
    np.testing.assert_allclose(fn(t, hct=0.45) * (1 - 0.45), fn(t, hct=0.0), rtol=1e-12)
    np.testing.assert_allclose(fn(t), fn(t, hct=aif.DEFAULT_HCT))


@pytest.mark.parametrize("fn", [aif.parker, aif.georgiou, aif.preclinical])
def test_delay_is_later_arrival_and_zero_before(fn):
    t = np.arange(0.0, 200.0, 0.5)
    d = 12.5
    delayed = fn(t, delay=d)
    assert np.all(delayed[t < d] == 0.0)
    np.testing.assert_allclose(delayed[t >= d], fn(t[t >= d] - d), rtol=1e-12)
    assert np.argmax(delayed) == np.argmax(fn(t)) + 25


def test_parker_peak_matches_published_shape():
    """First-pass peak of Parker's Cb near T1 = 0.17 min (≈ 10 s) at ≈ 6 mM (Parker 2006, Fig. 3)."""
    t = np.arange(0, 60, 0.1)
    cb = aif.parker(t, hct=0.0)
    assert 9.5 < t[np.argmax(cb)] < 11.0
    assert 5.5 < cb.max() < 6.5


def test_bad_hct_rejected():
    with pytest.raises(QMRIInputError, match="haematocrit"):
        aif.parker([0.0, 1.0], hct=1.0)


# --- shift ------------------------------------------------------------------------------------

def test_shift_by_whole_samples_is_zero_padded_roll():
    t = np.arange(0.0, 50.0, 2.0)
    c = np.sin(t / 7.0) ** 2 + 0.1
    np.testing.assert_allclose(aif.shift(t, c, 6.0), np.r_[np.zeros(3), c[:-3]])
    np.testing.assert_allclose(aif.shift(t, c, 0.0), c)


def test_shift_interpolates_linearly_and_holds_last_for_negative_delay():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    c = np.array([0.0, 2.0, 4.0, 3.0])
    np.testing.assert_allclose(aif.shift(t, c, 0.5), [0.0, 1.0, 3.0, 3.5])
    np.testing.assert_allclose(aif.shift(t, c, -1.5), [3.0, 3.5, 3.0, 3.0])


def test_shift_rejects_bad_input():
    with pytest.raises(QMRIInputError, match="increasing"):
        aif.shift([0.0, 2.0, 1.0], [0.0, 1.0, 2.0], 1.0)
    with pytest.raises(QMRIInputError, match="same length"):
        aif.shift([0.0, 1.0], [0.0, 1.0, 2.0], 1.0)


# --- files ------------------------------------------------------------------------------------

def test_load_aif_csv_with_header_and_blood_conversion(tmp_path):
    p = tmp_path / "aif.csv"
    p.write_text("time_s,conc_mM\n0,0\n2.5,1.5\n5,3.0\n")
    t, cp = aif.load_aif_csv(p)
    np.testing.assert_allclose(t, [0, 2.5, 5])
    np.testing.assert_allclose(cp, [0, 1.5, 3.0])
    t, cp = aif.load_aif_csv(p, blood=True, hct=0.4)
    np.testing.assert_allclose(cp, np.array([0, 1.5, 3.0]) / 0.6)


def test_load_aif_whitespace_and_comments(tmp_path):
    p = tmp_path / "aif.txt"
    p.write_text("# exported AIF\n0\t0.0\n1.0\t0.5\n")
    t, cp = aif.load_aif_csv(p)
    np.testing.assert_allclose(cp, [0.0, 0.5])


@pytest.mark.parametrize("text, message", [
    ("t,c\n0,0\n1,x\n", "not numeric"),
    ("t,c\n0,0\n2,1\n1,2\n", "strictly increasing"),
    ("t,c\n0,0\n", "at least 2"),
    ("0,0,1\n1,1,1\n", "3 columns"),
    ("0,0\n1,nan\n", "non-finite"),
])
def test_load_aif_csv_errors(tmp_path, text, message):
    p = tmp_path / "aif.csv"
    p.write_text(text)
    with pytest.raises(QMRIInputError, match=message) as info:
        aif.load_aif_csv(p)
    assert "\n" not in str(info.value)
    assert str(p) in str(info.value)


def test_load_aif_csv_missing_file(tmp_path):
    with pytest.raises(QMRIInputError, match="not found"):
        aif.load_aif_csv(tmp_path / "nope.csv")


# --- ROI --------------------------------------------------------------------------------------

def test_roi_aif_is_mean_over_mask_ignoring_nan():
    rng = np.random.default_rng(0)
    conc = rng.random((4, 3, 2, 10))
    mask = np.zeros((4, 3, 2), bool)
    mask[1:3, 0, 1] = True
    np.testing.assert_allclose(aif.roi_aif(conc, mask), conc[1:3, 0, 1].mean(axis=0))
    conc[1, 0, 1, 4] = np.nan
    assert aif.roi_aif(conc, mask)[4] == pytest.approx(conc[2, 0, 1, 4])


def test_roi_aif_errors():
    conc = np.zeros((2, 2, 1, 5))
    with pytest.raises(QMRIInputError, match="empty"):
        aif.roi_aif(conc, np.zeros((2, 2, 1), bool))
    with pytest.raises(QMRIInputError, match="does not match"):
        aif.roi_aif(conc, np.ones((2, 2), bool))
