"""Flat per-voxel fit results, as the estimators return them before they become volumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Fit status codes (``FitResult.status``, the ``status`` map).
STATUS_CONVERGED = 0
STATUS_MAX_ITER = 1
STATUS_FAILED = 2
#: Status of a voxel outside the mask in the ``status`` map (never in a ``FitResult``).
STATUS_NOT_FITTED = -1
STATUS_LABELS = {STATUS_CONVERGED: "converged", STATUS_MAX_ITER: "max-iter", STATUS_FAILED: "failed",
                 STATUS_NOT_FITTED: "not fitted (outside the mask)"}


@dataclass
class FitResult:
    """Results for ``n`` voxels, one 1-D array per quantity.

    Attributes
    ----------
    params : dict of str to ndarray, each shape (n,)
        Parameter estimates (and derived quantities), NaN where the fit failed.
    status : ndarray of int8, shape (n,)
        :data:`STATUS_CONVERGED` (0), :data:`STATUS_MAX_ITER` (1) or :data:`STATUS_FAILED` (2).
    n_iter : ndarray of int32, shape (n,)
        Iterations used (0 for closed-form methods and failed voxels).
    rmse : ndarray, shape (n,)
        Root-mean-square residual of the fitted signal, in the units of the fitted data.
    r2 : ndarray, shape (n,)
        Coefficient of determination of the fitted signal.
    se : dict of str to ndarray, each shape (n,)
        Optional standard errors, keyed by parameter name (empty when not computed).
    crlb : dict of str to ndarray, each shape (n,)
        Optional Cramér–Rao lower bounds of the standard deviation, keyed by parameter name
        (:mod:`qmri.fitting.crlb`; empty when not computed).
    vectors : dict of str to ndarray, each shape (n, k)
        Optional outputs of several values per voxel (e.g. DKI tensors), written as 4-D images.
    """

    params: dict[str, np.ndarray]
    status: np.ndarray
    n_iter: np.ndarray
    rmse: np.ndarray
    r2: np.ndarray
    se: dict[str, np.ndarray] = field(default_factory=dict)
    crlb: dict[str, np.ndarray] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.status.shape[0])

    def rescale(self, name: str, scale: np.ndarray) -> None:
        """Undo a per-voxel signal normalisation: multiply parameter ``name`` (a signal amplitude
        such as S0 or M0), its standard error and CRLB and ``rmse`` by ``scale`` (n,), in place."""
        self.params[name] = self.params[name] * scale
        for bound in (self.se, self.crlb):
            if name in bound:
                bound[name] = bound[name] * scale
        self.rmse = self.rmse * scale

    def mark_failed(self, bad: np.ndarray) -> None:
        """Set voxels ``bad`` (bool, (n,)) to status failed with NaN in every float output, in place."""
        if not np.any(bad):
            return
        self.status[bad] = STATUS_FAILED
        for arr in list(self.params.values()) + list(self.se.values()) + list(self.crlb.values()) \
                + list(self.vectors.values()) \
                + [self.rmse, self.r2]:
            arr[bad] = np.nan

    @staticmethod
    def concatenate(parts: list["FitResult"]) -> "FitResult":
        """Join results of consecutive voxel chunks, in order."""
        first = parts[0]
        return FitResult(
            params={k: np.concatenate([p.params[k] for p in parts]) for k in first.params},
            status=np.concatenate([p.status for p in parts]),
            n_iter=np.concatenate([p.n_iter for p in parts]),
            rmse=np.concatenate([p.rmse for p in parts]),
            r2=np.concatenate([p.r2 for p in parts]),
            se={k: np.concatenate([p.se[k] for p in parts]) for k in first.se},
            crlb={k: np.concatenate([p.crlb[k] for p in parts]) for k in first.crlb},
            vectors={k: np.concatenate([p.vectors[k] for p in parts]) for k in first.vectors},
        )

    @staticmethod
    def closed_form(names, P: np.ndarray, status: np.ndarray, rmse: np.ndarray, r2: np.ndarray) -> "FitResult":
        """A result of a closed-form method (no iterations): columns of ``P`` (n, len(names))."""
        return FitResult(params={k: P[:, j].copy() for j, k in enumerate(names)}, status=status,
                         n_iter=np.zeros(P.shape[0], np.int32), rmse=rmse, r2=r2)
