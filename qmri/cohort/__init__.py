"""Cohorts: ``qmri cohort``, a BIDS App that fits every participant of a BIDS dataset on Dask, then
fits the population habitat model and writes one table per cohort.

=============  ===============================================================================
module         holds
=============  ===============================================================================
``config``     ``steps.toml``: the fit steps, the ROI masks, the habitat step; checks; the hash
``dataset``    participants (subject, session) and files of a BIDS dataset selected by entities
``tasks``      the tasks (fit, ROI statistics, habitats) and :func:`execute`, what a worker runs
``engine``     Dask: a local cluster of worker processes, or an existing scheduler; progress
``app``        :func:`run_cohort`: the participant and group levels (the one library call)
``example``    the example BIDS dataset (habitat phantom) and its configuration
=============  ===============================================================================

Dask is imported only when tasks run (:mod:`qmri.cohort.engine`).

Example
-------
>>> from qmri.cohort import run_cohort                     # doctest: +SKIP
>>> out = run_cohort("bids", "bids/derivatives/qmri", "participant", "steps.toml")
>>> print(out.summary()); print(out.failure_table())
"""

from qmri.cohort.app import LEVELS, CohortOutcome, run_cohort
from qmri.cohort.config import CohortConfig, load_config

__all__ = ["LEVELS", "CohortConfig", "CohortOutcome", "load_config", "run_cohort"]
