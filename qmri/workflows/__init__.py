"""Library pipelines from files (or arrays) to maps: what the command line calls, callable from Python.

=================  ============================================================================
module             holds
=================  ============================================================================
``job``            :class:`Workflow`, :class:`FitJob` and :func:`fit_files` (files to files)
``diffusion``      diffusion series with ``.bval``/``.bvec`` (IVIM, ADC, stretched, DKI)
``dce``            the DCE pipeline: :func:`fit_dce` (arrays) and its file workflow
``vfa``            variable-flip-angle T1 mapping with an optional B1 map
``demo``           the phantom fits of ``qmri demo``
``habitat_demo``   the habitat part of ``qmri demo`` (phantom series fitted, then clustered)
=================  ============================================================================
"""

from qmri.workflows import dce, diffusion, vfa
from qmri.workflows.dce import fit_dce
from qmri.workflows.job import FitJob, FitOutcome, Workflow, fit_files

#: Workflows by name (a model class's ``workflow`` attribute).
WORKFLOWS: dict[str, Workflow] = {wf.WORKFLOW.name: wf.WORKFLOW for wf in (diffusion, dce, vfa)}

__all__ = ["WORKFLOWS", "Workflow", "FitJob", "FitOutcome", "fit_files", "fit_dce"]
