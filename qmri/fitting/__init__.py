"""Model-agnostic estimators: batched bounded Levenberg–Marquardt (Numba) and linear solvers.

================  ======================================================================
module            holds
================  ======================================================================
``lm``            the bounded Levenberg–Marquardt engine :func:`fit_lm` for any declared model
``linear``        batched log-linear OLS / WLS / constrained least squares
``linalg``        per-voxel Cholesky and fit-quality helpers for kernels
``result``        :class:`FitResult` and the status codes
``methods``       estimation methods as objects (:class:`~qmri.fitting.methods.Method`, least squares)
================  ======================================================================
"""

from qmri.fitting.lm import LMOptions, fit_lm
from qmri.fitting.result import (STATUS_CONVERGED, STATUS_FAILED, STATUS_LABELS, STATUS_MAX_ITER, STATUS_NOT_FITTED,
                                 FitResult)

__all__ = [
    "fit_lm",
    "LMOptions",
    "FitResult",
    "STATUS_CONVERGED",
    "STATUS_MAX_ITER",
    "STATUS_FAILED",
    "STATUS_NOT_FITTED",
    "STATUS_LABELS",
]
