"""Label meaning: habitats are numbered by a declared feature, so habitat 1 is the same tissue everywhere.

Clustering returns classes in an arbitrary order. Sorting the fitted classes by their mean of one
declared feature (default: the first map, ascending) fixes the numbering: with D first, habitat 1
is always the lowest-diffusivity class, in every subject, every run with the same seed, and also
when subjects are clustered one at a time (each with its own model). This is the relabelling by
feature of the habitat literature (e.g. ascending ADC); a cohort model (:mod:`qmri.habitats.model`)
applies one numbering to every subject it labels.
"""

from __future__ import annotations

import numpy as np

from qmri.errors import QMRIInputError


def habitat_order(means: np.ndarray, names, order_by: str | None = None) -> np.ndarray:
    """Permutation putting the classes in ascending order of their mean of ``order_by``.

    Parameters
    ----------
    means : ndarray (k, F)
        Class means (normalised or physical: every normalisation is increasing per feature, so
        the order is the same).
    names : list of str
        Feature names (columns of ``means``).
    order_by : str, optional
        Feature to sort by; default the first.

    Returns
    -------
    ndarray of int (k,)
        ``order[0]`` is the class that becomes habitat 1.

    Raises
    ------
    QMRIInputError
        ``order_by`` is not a feature.
    """
    names = list(names)
    key = names[0] if order_by is None else order_by
    if key not in names:
        raise QMRIInputError(f"--order-by {key!r} is not a feature; the features are {', '.join(names)}")
    j = names.index(key)
    return np.lexsort((np.arange(means.shape[0]), means[:, j]))
