"""Validation of a qmri installation against reference data: what ``qmri validate`` runs.

The suites (:data:`SUITES`), each a module of this package declaring ``SUITE``, ``TITLE``,
``RULES`` and ``cases()`` (:class:`qmri.validation.cases.Case` objects):

==========================  ===================================================================
``osipi-ivim``              OSIPI TF2.4 IVIM cases (:mod:`~qmri.validation.osipi_ivim`)
``osipi-dce``               OSIPI DCE pharmacokinetic models (:mod:`~qmri.validation.osipi_dce`)
``osipi-t1``                OSIPI VFA T1 mapping (:mod:`~qmri.validation.osipi_t1`)
``osipi-concentration``     OSIPI signal to concentration (:mod:`~qmri.validation.osipi_concentration`)
``osipi-aif``               OSIPI population AIFs (:mod:`~qmri.validation.osipi_aif`)
``real``                    real acquisitions through the commands (:mod:`~qmri.validation.real`)
``coverage``                95 % intervals of the least-squares fits (:mod:`~qmri.validation.coverage`)
``phantoms``                every model's phantom, every method (:mod:`~qmri.validation.phantoms`)
==========================  ===================================================================

The OSIPI files and the real acquisitions ship with the package (``data/osipi``,
:mod:`qmri.validation.osipi`; ``data/real``, :mod:`qmri.validation.real`), so an
installed qmri validates itself without network or source checkout. The test suite runs the same
cases (one test per case), so the tests and ``qmri validate`` share one implementation of each
rule and tolerance.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

from qmri.validation.runner import SUITES, run_suite, suite

__all__ = ["SUITES", "ValidationRun", "validate"]


@dataclasses.dataclass
class ValidationRun:
    """What :func:`validate` ran and where it wrote the report.

    Attributes
    ----------
    runs : list of qmri.validation.runner.SuiteRun
    report : Path
        ``validation.md``.
    seconds : float
    """

    runs: list
    report: Path
    seconds: float

    @property
    def failures(self) -> list:
        """Failed cases (:class:`qmri.validation.runner.Result`), expected failures excluded."""
        return [r for run in self.runs for r in run.failures]

    @property
    def n_cases(self) -> int:
        return sum(len(run.results) for run in self.runs)

    def summary(self) -> str:
        """One line: how many cases failed, in which suites, and where the report is."""
        if not self.failures:
            return f"validation passed: {self.n_cases} cases in {self.seconds:.1f} s; report: {self.report}"
        where = ", ".join(f"{run.name}: {len(run.failures)}" for run in self.runs if run.failures)
        first = self.failures[0]
        return (f"validation failed: {len(self.failures)} of {self.n_cases} cases ({where}; first "
                f"{first.case.suite} {first.case.id}: {first.outcome.message}); report: {self.report}")


def validate(out_dir, suites=None, *, force: bool = False,
             echo: Callable[[str], None] | None = None) -> ValidationRun:
    """Run validation suites and write the report (``validation.md`` and one PNG per suite) into
    ``out_dir`` as one result set (:class:`qmri.resultset.ResultSet`: all files or none).

    Parameters
    ----------
    out_dir : path
        Report folder (created).
    suites : list of str, optional
        Names in :data:`SUITES` (default all, in that order).
    force : bool
        Overwrite an earlier report.
    echo : callable, optional
        Called with each line of a suite's :meth:`~qmri.validation.runner.SuiteRun.lines` when it
        finishes (counts, expected failures: progress).

    Returns
    -------
    ValidationRun
        Its ``failures`` are empty when every case passed or failed as expected.

    Raises
    ------
    QMRIInputError
        Unknown suite; the report exists and ``force`` is False (checked before running anything).
    """
    from qmri.resultset import ResultSet
    from qmri.validation import report

    names = list(dict.fromkeys(suites or SUITES))
    for name in names:
        suite(name)
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    with ResultSet(out_dir, report.file_names(names), force=force) as rs:
        runs = []
        for name in names:
            run = run_suite(name)
            runs.append(run)
            if echo is not None:
                for line in run.lines():
                    echo(line)
            report.figure(run, rs.path(f"{name}.png"))
        seconds = time.perf_counter() - t0
        rs.path(report.REPORT).write_text(report.markdown(runs, seconds))
    return ValidationRun(runs, out_dir / report.REPORT, seconds)
