"""IVIM against the OSIPI TF2.4 reference cases, with OSIPI's own rules and tolerances
(:mod:`qmri.validation.osipi_ivim`: the cases, rules and tolerances ``qmri validate`` runs)."""

import numba
import numpy as np
import pytest

from qmri.models import IVIM
from qmri.validation import osipi_ivim

from conftest import case_params, check_case


@pytest.mark.parametrize("case", case_params(osipi_ivim.cases()))
def test_osipi_reference_case(case):
    check_case(case)


SILLY = {"S0": (1.1, 1.3), "f": (0.2, 0.3), "Dstar": (0.01, 0.02), "D": (0.0008, 0.0012)}


@pytest.mark.parametrize("method", ["lsq", "segmented"])
def test_narrow_bounds_are_honoured(method):
    d = osipi_ivim.load("generic.json")
    tissues = [k for k in d if k != "config"]
    data = np.array([d[t]["data"] for t in tissues])
    maps = IVIM(d["config"]["bvalues"], bounds=SILLY).fit(data, method=method)
    for k, (lo, hi) in SILLY.items():
        # S0 bounds are relative to the normalising signal (the mean at the lowest b-value)
        vals = maps[k] / data[:, 0] if k == "S0" else maps[k]
        assert np.all(vals >= lo - 1e-10) and np.all(vals <= hi + 1e-10), f"{k} outside [{lo}, {hi}]: {vals}"


def test_serial_and_parallel_results_equal():
    d = osipi_ivim.load("generic_one.json")
    tissues = [k for k in d if k != "config"]
    data = np.tile(np.array([d[t]["data"] for t in tissues]), (20, 1))
    model = IVIM(d["config"]["bvalues"])
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = model.fit(data)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        parallel = model.fit(data)
    finally:
        numba.set_num_threads(before)
    for k in ("S0", "f", "D", "Dstar", "status", "n_iter"):
        np.testing.assert_array_equal(serial[k], parallel[k])
