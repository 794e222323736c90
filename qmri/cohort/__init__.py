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
The configuration of the example cohort (``qmri cohort --example-config``), checked before anything
runs:

>>> from pathlib import Path
>>> from qmri.cohort import load_config
>>> from qmri.cohort.example import EXAMPLE_CONFIG
>>> _ = Path("steps.toml").write_text(EXAMPLE_CONFIG)
>>> cfg = load_config("steps.toml")
>>> {name: (step.command, step.method) for name, step in cfg.fits.items()}
{'ivim': ('ivim', 'segmented'), 'dce': ('dce', None)}
>>> cfg.habitat.features, cfg.habitat.settings
({'D': ('ivim', 'D'), 'f': ('ivim', 'f'), 'Ktrans': ('dce', 'Ktrans')}, {'k': 3})

Then ``run_cohort("bids", "bids/derivatives/qmri", "participant", "steps.toml")`` fits every
participant of the BIDS dataset ``bids`` (written by ``qmri phantom cohort --out-dir bids``) and
``print(out.summary())`` reports the tasks; the ``group`` level follows with the habitats and the
cohort table (a script must call it under ``if __name__ == "__main__":``, see :func:`run_cohort`).
"""

from qmri.cohort.app import LEVELS, CohortOutcome, run_cohort
from qmri.cohort.config import CohortConfig, load_config

__all__ = ["LEVELS", "CohortConfig", "CohortOutcome", "load_config", "run_cohort"]
