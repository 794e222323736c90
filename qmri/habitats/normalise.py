"""Feature normalisation before clustering, explicit and recorded.

=============  ===========================================================================================
name           what
=============  ===========================================================================================
``none``       physical units as read (features with larger numbers weigh more)
``zscore``     per subject: (x - mean) / SD of that subject's ROI (the default; removes per-subject scale
               and offset differences such as scanner or AIF calibration)
``robust``     per subject: (x - median) / IQR of that subject's ROI
``population`` one z-score for everyone: the cohort's mean and SD, stored with the model and reused for
               new subjects (keeps differences between subjects)
=============  ===========================================================================================

Per-patient z-scoring before pooling is the common choice of habitat studies (see Wu LX et al.,
Cancer Manag Res 2025 for a review); per-subject statistics also depend on each tumour's
composition, which the population model of :mod:`qmri.habitats.clustering` then absorbs.
"""

from __future__ import annotations

import numpy as np

from qmri.errors import QMRIInputError

NORMALISATIONS = ("none", "zscore", "robust", "population")


def _centre_scale(values: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    if how == "robust":
        q1, med, q3 = np.percentile(values, [25, 50, 75], axis=0)
        return med, q3 - q1
    return values.mean(axis=0), values.std(axis=0)


def population_statistics(values_list) -> dict:
    """``{"mean": [...], "sd": [...]}`` of the pooled voxels of every subject (for ``population``)."""
    pooled = np.concatenate(list(values_list))
    centre, scale = _centre_scale(pooled, "zscore")
    return {"mean": centre.tolist(), "sd": scale.tolist()}


def normalise(values: np.ndarray, how: str, names, *, population: dict | None = None, who: str = "") -> np.ndarray:
    """Normalised copy of ``values`` (n, F).

    Parameters
    ----------
    values : ndarray (n, F)
    how : str
        One of :data:`NORMALISATIONS`.
    names : list of str
        Feature names (for errors).
    population : dict, optional
        ``{"mean", "sd"}`` for ``how="population"`` (:func:`population_statistics`).
    who : str
        Subject named in errors.

    Raises
    ------
    QMRIInputError
        Unknown method; a feature constant over the ROI (zero SD or IQR) with a scaling method.
    """
    if how not in NORMALISATIONS:
        raise QMRIInputError(f"unknown normalisation {how!r}; choose one of {', '.join(NORMALISATIONS)}")
    if how == "none":
        return np.array(values, dtype=np.float64)
    if how == "population":
        if population is None:
            raise QMRIInputError("population normalisation needs the cohort statistics")
        centre, scale = np.asarray(population["mean"]), np.asarray(population["sd"])
    else:
        centre, scale = _centre_scale(values, how)
    bad = [n for n, s in zip(names, scale) if not s > 0]
    if bad:
        raise QMRIInputError(f"{who + ': ' if who else ''}feature {bad[0]} is constant over the ROI; it cannot be "
                             f"scaled ({how} normalisation)")
    return (values - centre) / scale
