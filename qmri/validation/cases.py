"""What the validation suites are made of: reference cases with their pass rule.

A :class:`Case` is one reference case (an OSIPI row, a phantom fitted by one method): ``run()``
computes what qmri gives and judges it by the case's rule, returning an :class:`Outcome` (passed or
not, a one-line message naming what failed, the measured and reference values). The same cases are
run by ``qmri validate`` (:func:`qmri.validation.validate`) and by the test suite, one test per case.

The OSIPI pass rule is :func:`within`: ``|measured - reference| <= a_tol + r_tol·|reference|``
element-wise, NaN failing (the OSIPI code collections' tests, e.g. DCE-DSC-MRI_CodeCollection
``test/*/..._data.py`` and TF2.4 ``tests/IVIMmodels/unit_tests/test_ivim_fit.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np


@dataclasses.dataclass
class Outcome:
    """What a case measured and whether it passed.

    Attributes
    ----------
    passed : bool
    message : str
        One line naming what failed ("" when passed).
    values : dict of str to (ndarray, ndarray)
        ``{quantity (with unit): (measured, reference)}`` for the report's figures.
    metrics : dict of str to float
        Further numbers for the report (e.g. NRMSE at the phantom's SNR).
    """

    passed: bool
    message: str = ""
    values: dict = dataclasses.field(default_factory=dict)
    metrics: dict = dataclasses.field(default_factory=dict)

    def merge(self, other: "Outcome") -> "Outcome":
        """Both outcomes as one: passed if both passed, messages joined, values concatenated."""
        values = dict(self.values)
        for k, (m, r) in other.values.items():
            if k in values:
                values[k] = (np.concatenate([values[k][0], m]), np.concatenate([values[k][1], r]))
            else:
                values[k] = (m, r)
        message = "; ".join(x for x in (self.message, other.message) if x)
        return Outcome(self.passed and other.passed, message, values, {**self.metrics, **other.metrics})


@dataclasses.dataclass(frozen=True)
class Case:
    """One reference case of a suite.

    Attributes
    ----------
    suite : str
        Name of the suite (a key of :data:`qmri.validation.SUITES`).
    group : str
        Row of the report's table the case counts in (model and method, or reference file).
    id : str
        Unique within the suite (also the test id).
    run : callable () -> Outcome
        Computes and judges the case; may raise (the runner counts that as a failure).
    expected_failure : str
        Empty, or why the case is known to fail with the measured value (counted apart, not as a
        failure; the tests mark it as a strict expected failure).
    """

    suite: str
    group: str
    id: str
    run: Callable[[], Outcome]
    expected_failure: str = ""


def within(measured, reference, a_tol: float, r_tol: float) -> np.ndarray:
    """OSIPI pass criterion ``|measured - reference| <= a_tol + r_tol·|reference|`` element-wise (NaN fails)."""
    measured = np.asarray(measured, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    return np.abs(measured - reference) <= a_tol + r_tol * np.abs(reference)


def compare(measured, reference, a_tol: float, r_tol: float, what: str, quantity: str) -> Outcome:
    """Judge arrays by :func:`within`; on failure the message gives the number of points outside and
    the worst one. ``quantity`` names the values in :attr:`Outcome.values`."""
    measured = np.atleast_1d(np.asarray(measured, dtype=np.float64))
    reference = np.atleast_1d(np.asarray(reference, dtype=np.float64))
    ok = within(measured, reference, a_tol, r_tol)
    values = {quantity: (measured, reference)}
    if ok.all():
        return Outcome(True, values=values)
    excess = np.where(np.isfinite(measured), np.abs(measured - reference) - (a_tol + r_tol * np.abs(reference)),
                      np.inf)
    i = int(np.argmax(excess))
    return Outcome(False, f"{what}: {int((~ok).sum())}/{ok.size} points outside |meas-ref| <= {a_tol:g} + "
                          f"{r_tol:g}|ref|; worst at index {i}: measured {measured[i]:.6g}, reference "
                          f"{reference[i]:.6g}", values)


def compare_parameters(measured: dict, reference: dict, tolerances: dict, units: dict | None = None) -> Outcome:
    """Judge fitted parameters one by one by :func:`within`: ``measured`` and ``reference`` map names
    to floats, ``tolerances`` names to ``(a_tol, r_tol)``; the message lists every parameter outside."""
    bad, values = [], {}
    for k, m in measured.items():
        a_tol, r_tol = tolerances[k]
        ref = reference[k]
        unit = (units or {}).get(k, "")
        values[f"{k} ({unit})" if unit else k] = (np.array([m], dtype=np.float64), np.array([ref], dtype=np.float64))
        if not within(m, ref, a_tol, r_tol):
            bad.append(f"{k}: measured {m:.6g}, reference {ref:.6g}, allowed ±{a_tol + r_tol * abs(ref):.3g}")
    return Outcome(not bad, "; ".join(bad), values)


def missing(suite: str, group: str, name: str, error: Exception) -> Case:
    """A case standing for reference data that could not be read: it fails with ``error``'s message."""
    return Case(suite, group, f"missing-{name}", lambda: Outcome(False, str(error)))


def validated_fit(model, data, method: str, mask=None):
    """``model.fit(data, mask, method)`` with the options the method's
    :class:`~qmri.models.methods.Validation` declares for validation runs."""
    return model.fit(data, mask=mask, method=method, **type(model).method(method).validation.options)
