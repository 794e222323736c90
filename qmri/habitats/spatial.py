"""Spatial context: the ROI's neighbour graph, the Potts Markov random field, supervoxels.

Habitats are spatially contiguous while voxel values are noisy, so labels are regularised in space:

* ``mrf`` (default): a Potts Markov random field over the 26-neighbourhood, each neighbour weighted
  by (smallest voxel spacing / its distance in mm), solved by mean-field iterations
  ``q_i ∝ exp(L_i + β Σ_j w_ij q_j)`` with L the class log-likelihoods of the voxel (the hidden
  Markov random field of Zhang, Brady & Smith, IEEE TMI 2001;20:45, as in FSL FAST).
* ``supervoxels``: the two-level scheme of published habitat pipelines (e.g. Wu J et al., Radiology
  2018;288:26): SLIC supervoxels per subject on the multi-channel normalised maps (scikit-image,
  Achanta et al., IEEE TPAMI 2012;34:2274), then population clustering of supervoxel means.
* ``none``: voxel-wise clustering.
"""

from __future__ import annotations

import numpy as np

SPATIAL = ("mrf", "supervoxels", "none")
#: Mean-field iterations per labelling.
MRF_ITERATIONS = 10


def neighbour_graph(usable: np.ndarray, voxel_mm):
    """Sparse (n, n) weights between usable voxels (C order) that touch (26-neighbourhood).

    The weight of a neighbour is ``min(voxel_mm) / distance`` (1 for the nearest neighbours), so that
    anisotropic voxels couple less across the coarse axis.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n, n)
        n = number of usable voxels; symmetric, zero diagonal.
    """
    from scipy import sparse

    usable = np.asarray(usable, dtype=bool)
    n = int(usable.sum())
    index = np.full(tuple(s + 2 for s in usable.shape), -1, dtype=np.int64)
    index[1:-1, 1:-1, 1:-1][usable] = np.arange(n)
    coords = np.argwhere(usable) + 1
    vox = np.asarray(voxel_mm, dtype=np.float64)
    rows, cols, weights = [], [], []
    for off in np.argwhere(np.ones((3, 3, 3))) - 1:
        if not off.any():
            continue
        j = index[tuple((coords + off).T)]
        keep = j >= 0
        rows.append(np.flatnonzero(keep))
        cols.append(j[keep])
        weights.append(np.full(int(keep.sum()), vox.min() / np.linalg.norm(off * vox)))
    return sparse.csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


def softmax(a: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (n, k) scores (computed in a new array)."""
    e = a - a.max(axis=1, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=1, keepdims=True)
    return e


def mean_field(loglik: np.ndarray, graph, beta: float, iterations: int = MRF_ITERATIONS) -> np.ndarray:
    """Posterior class probabilities (n, k) under a Potts prior of strength ``beta`` (mean field).

    Parameters
    ----------
    loglik : ndarray (n, k)
        Log-likelihood of each voxel under each class.
    graph : sparse (n, n)
        :func:`neighbour_graph`.
    beta : float
        Coupling per nearest neighbour (0: voxel-wise posteriors).
    """
    q = softmax(loglik)
    if beta <= 0:
        return q
    for _ in range(int(iterations)):
        q = softmax(loglik + beta * (graph @ q))
    return q


def denoised(values: np.ndarray, graph) -> np.ndarray:
    """Each voxel's features replaced by the weighted mean over itself and its neighbours
    (weights as the MRF's, the voxel itself 1): what the spatial model sees, used to choose k."""
    total = np.asarray(graph.sum(axis=1)).ravel() + 1.0
    return (values + graph @ values) / total[:, None]


def supervoxels(values: np.ndarray, usable: np.ndarray, voxel_mm, *, size: int, compactness: float) -> np.ndarray:
    """SLIC supervoxels of one subject's normalised features.

    Parameters
    ----------
    values : ndarray (n, F)
        Normalised features of the usable voxels (C order).
    usable : ndarray of bool (X, Y, Z)
    voxel_mm : array_like (3,)
        Voxel spacing (SLIC's ``spacing``).
    size : int
        Target voxels per supervoxel (``n_segments = n / size``, at least 1).
    compactness : float
        SLIC compactness (balance of feature distance and distance in space).

    Returns
    -------
    ndarray of int (n,)
        Supervoxel index 0..S-1 of each usable voxel.
    """
    from skimage.segmentation import slic

    img = np.zeros(usable.shape + (values.shape[1],))
    img[usable] = values
    n_seg = max(int(round(values.shape[0] / max(int(size), 1))), 1)
    seg = slic(img, n_segments=n_seg, compactness=float(compactness), mask=usable, channel_axis=-1,
               spacing=np.asarray(voxel_mm, dtype=np.float64), start_label=1, enforce_connectivity=True)
    _, inverse = np.unique(seg[usable], return_inverse=True)
    return inverse.ravel()


def segment_means(values: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Mean feature vector of each segment, (S, F)."""
    counts = np.bincount(segments)
    sums = np.stack([np.bincount(segments, weights=values[:, j], minlength=counts.size)
                     for j in range(values.shape[1])], axis=1)
    return sums / counts[:, None]
