"""Population AIFs against the OSIPI reference curves (:mod:`qmri.validation.osipi_aif`, as ``qmri validate``
runs them); AIF shifting, files and ROIs."""

import numpy as np
import pytest
from conftest import case_params, check_case

from qmri.errors import QMRIInputError
from qmri.models import aif
from qmri.validation import osipi_aif


@pytest.mark.parametrize("case", case_params(osipi_aif.cases()))
def test_population_aif_osipi(case):
    check_case(case)


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
