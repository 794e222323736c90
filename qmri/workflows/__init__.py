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
``plot_fit``       ``qmri plot-fit``: one voxel's measured and fitted signal, the model rebuilt from the maps
=================  ============================================================================
"""

import importlib

from qmri.workflows.job import FitJob, FitOutcome, Workflow, fit_files

#: The workflows by name (a model class's ``workflow`` attribute): each is the ``WORKFLOW`` of the
#: module of that name in this package, imported when first needed.
NAMES = ("diffusion", "dce", "vfa")


def workflow(name: str) -> Workflow:
    """The workflow called ``name`` (importing its module only)."""
    if name not in NAMES:
        raise KeyError(f"no workflow {name!r}; there are {', '.join(NAMES)}")
    return importlib.import_module(f"qmri.workflows.{name}").WORKFLOW


def __getattr__(name: str):
    if name == "fit_dce":
        from qmri.workflows.dce import fit_dce

        return fit_dce
    if name == "WORKFLOWS":
        return {n: workflow(n) for n in NAMES}
    raise AttributeError(f"module 'qmri.workflows' has no attribute {name!r}")


__all__ = ["NAMES", "WORKFLOWS", "Workflow", "FitJob", "FitOutcome", "workflow", "fit_files", "fit_dce"]
