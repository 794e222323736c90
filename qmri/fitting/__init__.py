"""Model-agnostic estimators: batched bounded Levenberg–Marquardt (Numba) and linear solvers."""

from qmri.fitting.lm import STATUS_CONVERGED, STATUS_FAILED, STATUS_LABELS, STATUS_MAX_ITER, LMOptions, fit_lm
from qmri.fitting.result import FitResult

__all__ = [
    "fit_lm",
    "LMOptions",
    "FitResult",
    "STATUS_CONVERGED",
    "STATUS_MAX_ITER",
    "STATUS_FAILED",
    "STATUS_LABELS",
]
