"""Running suites of cases: every case's result, counted as passed, failed or expected failure."""

from __future__ import annotations

import dataclasses
import importlib
import time

from qmri.errors import QMRIInputError
from qmri.validation.cases import Case, Outcome

#: The suites by name: the module of ``qmri.validation`` that declares it (``SUITE``, ``TITLE``,
#: ``RULES`` and ``cases()``), in report order.
SUITES = {
    "osipi-ivim": "osipi_ivim",
    "osipi-dce": "osipi_dce",
    "osipi-t1": "osipi_t1",
    "osipi-concentration": "osipi_concentration",
    "osipi-aif": "osipi_aif",
    "real": "real",
    "coverage": "coverage",
    "phantoms": "phantoms",
}

PASSED, FAILED, EXPECTED, UNEXPECTED_PASS = "passed", "failed", "expected failure", "passed, expected to fail"


def suite(name: str):
    """The module declaring suite ``name``.

    Raises
    ------
    QMRIInputError
        Unknown suite.
    """
    if name not in SUITES:
        raise QMRIInputError(f"unknown validation suite {name!r}; choose from {', '.join(SUITES)}")
    return importlib.import_module(f"qmri.validation.{SUITES[name]}")


@dataclasses.dataclass
class Result:
    """A case, its outcome and how long it took (s)."""

    case: Case
    outcome: Outcome
    seconds: float

    @property
    def status(self) -> str:
        """:data:`PASSED`, :data:`FAILED`, :data:`EXPECTED` (an expected failure that failed) or
        :data:`UNEXPECTED_PASS` (one that passed: not a failure, but its note is out of date)."""
        if self.case.expected_failure:
            return UNEXPECTED_PASS if self.outcome.passed else EXPECTED
        return PASSED if self.outcome.passed else FAILED


def run_case(case: Case) -> Result:
    """Run one case; an exception is a failure whose message names it (even in an expected
    failure, which must fail by its rule, not crash)."""
    t = time.perf_counter()
    try:
        outcome = case.run()
    except Exception as exc:  # noqa: BLE001 - a crash is a validation failure, reported as such
        outcome = Outcome(False, f"{type(exc).__name__}: {exc}".splitlines()[0])
        case = dataclasses.replace(case, expected_failure="")
    return Result(case, outcome, time.perf_counter() - t)


@dataclasses.dataclass
class SuiteRun:
    """The results of one suite."""

    name: str
    title: str
    rules: str
    results: list
    seconds: float

    def count(self, status: str, group: str | None = None) -> int:
        return sum(r.status == status for r in self.results if group is None or r.case.group == group)

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.status == FAILED]

    def lines(self) -> list[str]:
        """What the suite's run says, for progress: the counts, then each expected failure (and each
        case expected to fail that passed) with its id and reason."""
        n = {st: self.count(st) for st in (PASSED, EXPECTED, UNEXPECTED_PASS, FAILED)}
        plural = "" if n[EXPECTED] == 1 else "s"
        out = [f"{self.name}: {len(self.results)} cases, {n[PASSED] + n[UNEXPECTED_PASS]} passed, {n[EXPECTED]} "
               f"expected failure{plural}, {n[FAILED]} failed ({self.seconds:.1f} s)"]
        for r in self.results:
            if r.status == EXPECTED:
                out.append(f"  expected failure {r.case.id}: {r.case.expected_failure}")
            elif r.status == UNEXPECTED_PASS:
                out.append(f"  expected to fail but passed {r.case.id} (its note is out of date): "
                           f"{r.case.expected_failure}")
        return out

    def groups(self) -> list[str]:
        """The report rows (case groups), in order of first appearance."""
        return list(dict.fromkeys(r.case.group for r in self.results))


def run_suite(name: str) -> SuiteRun:
    """Build and run every case of suite ``name`` (building them is part of the suite's time)."""
    module = suite(name)
    t = time.perf_counter()
    try:
        cases = module.cases()
    except Exception as exc:  # noqa: BLE001 - a suite that cannot even list its cases failed
        failed = Outcome(False, f"listing the cases failed: {type(exc).__name__}: {exc}".splitlines()[0])
        cases = [Case(name, "cases", "cases", lambda: failed)]
    results = [run_case(c) for c in cases]
    return SuiteRun(name, module.TITLE, module.RULES, results, time.perf_counter() - t)
