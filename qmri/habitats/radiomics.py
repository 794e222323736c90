"""Habitat features of one subject: the row a subject gives an outcome model.

From a subject's habitat map (1..k inside its usable ROI voxels) and its feature maps, one flat
dict of named values with a unit for each (``"1"`` for dimensionless):

========================  =========================================================================================
column                    meaning (unit)
========================  =========================================================================================
``volume_ml``             labelled ROI volume (mL)
``fraction_h<h>``         fraction of the labelled ROI in habitat h (1)
``volume_ml_h<h>``        volume of habitat h (mL)
``components_h<h>``       number of face-connected components of habitat h (1)
``largest_h<h>``          largest component of habitat h over the habitat's volume (1; NaN if h is absent)
``entropy_bits``          Shannon entropy of the fractions (bits)
``ith_score``             intratumoural-heterogeneity score, below (1)
``msi_<a>_<b>``           multiregional spatial interaction: face-adjacent voxel pairs with labels a and b over
                          every face-adjacent pair touching the labelled ROI, a <= b, 0 = outside (1)
``<map>_<stat>_h<h>``     first-order statistics of each map in habitat h: ``mean``, ``sd``, ``p10``, ``median``,
                          ``p90`` (the map's unit), ``skewness``, ``kurtosis`` (excess; 1)
``<map>_glcm_<p>_h<h>``   grey-level co-occurrence of each map in habitat h: ``contrast``, ``dissimilarity``,
                          ``homogeneity``, ``energy``, ``correlation`` (1)
========================  =========================================================================================

Sources. MSI: the face-neighbour co-occurrence matrix of habitat labels of Wu J et al., Radiology
2018;288:26 (here the normalised counts themselves). ITH score: ``1 - (1/S) Σ_h S_h,max / n_h``, with S
the labelled voxels, S_h,max the largest connected component of habitat h and n_h its number of
components (the ITHscore of Li J et al., Eur Radiol 2023;33:893, as HABIT computes it): 0 when every
habitat is one blob, towards 1 when the habitats are fragmented. GLCM: scikit-image
:func:`skimage.feature.graycomatrix` / :func:`~skimage.feature.graycoprops` (Haralick et al. 1973) on
each axial slice, offsets of 1 voxel at 0° and 90° in-plane, symmetric, the slices' counts summed
before normalising; the map is quantised into :data:`GLCM_LEVELS` equal bins between its 1st and 99th
percentile over the subject's whole labelled ROI (IBSI "fixed bin number"; the same bins for every
habitat of a subject), and only pairs of voxels both in the habitat count. A habitat a subject lacks
gives NaN statistics (imputed inside the training folds of :mod:`qmri.workflows.predict`).
"""

from __future__ import annotations

import numpy as np

from qmri.habitats.statistics import adjacency, entropy_bits

#: Version of the feature definitions below (a saved outcome model records it; change it with them).
FEATURES_VERSION = 1
#: Grey levels of the GLCM quantisation.
GLCM_LEVELS = 16
#: First-order statistics per map and habitat (name, unit is the map's: True).
FIRST_ORDER = (("mean", True), ("sd", True), ("p10", True), ("median", True), ("p90", True),
               ("skewness", False), ("kurtosis", False))
#: GLCM properties (scikit-image names).
GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation")


def _unit(u: str) -> str:
    return u if u else "1"


def first_order(v: np.ndarray) -> dict:
    """Mean, SD (ddof 0), 10th / 50th / 90th percentiles, skewness and excess kurtosis of ``v``
    (NaN for an empty array; skewness and kurtosis NaN for fewer than 3 values or zero spread)."""
    if v.size == 0:
        return {name: np.nan for name, _ in FIRST_ORDER}
    mean, sd = float(v.mean()), float(v.std())
    p10, med, p90 = (float(x) for x in np.percentile(v, [10, 50, 90]))
    if v.size >= 3 and sd > 0:
        z = (v - mean) / sd
        skew, kurt = float(np.mean(z ** 3)), float(np.mean(z ** 4) - 3.0)
    else:
        skew = kurt = np.nan
    return {"mean": mean, "sd": sd, "p10": p10, "median": med, "p90": p90, "skewness": skew, "kurtosis": kurt}


def quantise(volume: np.ndarray, where: np.ndarray, levels: int = GLCM_LEVELS) -> np.ndarray:
    """Grey levels 1..``levels`` of ``volume`` inside ``where`` (0 elsewhere): equal bins between its
    1st and 99th percentile there, values beyond them in the end bins."""
    out = np.zeros(volume.shape, dtype=np.uint8)
    v = volume[where]
    if v.size == 0:
        return out
    lo, hi = np.percentile(v, [1, 99])
    if not hi > lo:
        out[where] = 1
        return out
    q = np.floor((v - lo) / (hi - lo) * levels).astype(np.int64)
    out[where] = np.clip(q, 0, levels - 1) + 1
    return out


def glcm_properties(grey: np.ndarray, labels: np.ndarray, k: int, levels: int = GLCM_LEVELS) -> list[dict]:
    """GLCM properties (:data:`GLCM_PROPS`) of the grey levels ``grey`` (1..levels) in each habitat
    1..k of ``labels`` (3-D): axial slices, 1-voxel offsets at 0° and 90°, symmetric, counts summed over
    slices and angles, only pairs of voxels both in the habitat; NaN for a habitat without such a pair.

    One :func:`skimage.feature.graycomatrix` call covers every habitat and slice: the level of a voxel
    of habitat h is ``(h - 1) * levels + grey`` (0 outside), the axial slices are laid side by side
    with a column of zeros between them, and the within-habitat blocks of the matrix are kept.
    """
    from skimage.feature import graycomatrix, graycoprops

    inside = labels > 0
    zs = np.flatnonzero(inside.any(axis=(0, 1)))
    if zs.size == 0:
        return [{p: np.nan for p in GLCM_PROPS} for _ in range(k)]
    code = np.where(inside, (labels.astype(np.int64) - 1) * levels + grey, 0)
    X, Y = code.shape[:2]
    tiled = np.zeros((X, zs.size * (Y + 1)), dtype=np.int64)
    for i, z in enumerate(zs):
        tiled[:, i * (Y + 1): i * (Y + 1) + Y] = code[:, :, z]
    n_levels = k * levels + 1
    dtype = np.uint8 if n_levels <= 256 else np.uint16
    m = graycomatrix(tiled.astype(dtype), distances=[1], angles=[0.0, np.pi / 2], levels=n_levels,
                     symmetric=True)[:, :, 0, :].sum(axis=-1).astype(np.float64)
    blocks = np.stack([m[1 + h * levels: 1 + (h + 1) * levels, 1 + h * levels: 1 + (h + 1) * levels]
                       for h in range(k)], axis=-1)[:, :, None, :]  # (L, L, 1, k): habitats as "angles"
    present = blocks.sum(axis=(0, 1, 2)) > 0
    safe = np.where(present[None, None, None, :], blocks, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        props = {name: graycoprops(safe, name)[0] for name in GLCM_PROPS}
    return [{name: (float(props[name][h]) if present[h] else np.nan) for name in GLCM_PROPS} for h in range(k)]


def component_sizes(mask: np.ndarray) -> np.ndarray:
    """Voxel counts of the face-connected components of a boolean volume."""
    from scipy import ndimage

    lab, n = ndimage.label(mask)
    return np.bincount(lab.ravel(), minlength=n + 1)[1:] if n else np.zeros(0, dtype=np.int64)


def ith_score(labels: np.ndarray, k: int) -> float:
    """``1 - (1/S) Σ_h S_h,max / n_h`` (see the module docstring); 0 for an empty map."""
    s_total = int(np.count_nonzero(labels))
    if s_total == 0:
        return 0.0
    acc = 0.0
    for h in range(1, k + 1):
        sizes = component_sizes(labels == h)
        if sizes.size:
            acc += sizes.max() / sizes.size
    return float(1.0 - acc / s_total)


def msi(labels: np.ndarray, k: int) -> dict:
    """``{(a, b): fraction}`` for a <= b in 0..k, (0, 0) excluded: face-adjacent pairs by labels over
    all such pairs (:func:`qmri.habitats.statistics.adjacency`)."""
    m = adjacency(labels, k).astype(np.float64)
    pairs = {(a, b): m[a, b] for a in range(k + 1) for b in range(a, k + 1) if (a, b) != (0, 0)}
    total = sum(pairs.values())
    return {key: (v / total if total else np.nan) for key, v in pairs.items()}


def subject_features(labels: np.ndarray, subject, k: int) -> tuple[dict, dict]:
    """Every habitat feature of one subject (see the module docstring).

    Parameters
    ----------
    labels : ndarray of uint8 (X, Y, Z)
        The subject's habitat map (0 outside the usable ROI, 1..k inside).
    subject : qmri.habitats.features.SubjectFeatures
        Its maps (``values`` over ``usable``), names, units and voxel size.
    k : int
        Number of habitats of the model.

    Returns
    -------
    values : dict of str to float
    units : dict of str to str
        ``"1"`` for dimensionless columns.
    """
    lab = labels[subject.usable]
    n = lab.size
    vml = subject.voxel_ml
    vals, units = {"volume_ml": n * vml}, {"volume_ml": "mL"}
    counts = np.bincount(lab, minlength=k + 1)[1:k + 1]
    for h in range(1, k + 1):
        sizes = component_sizes(labels == h)
        vals[f"fraction_h{h}"] = counts[h - 1] / n if n else np.nan
        vals[f"volume_ml_h{h}"] = counts[h - 1] * vml
        vals[f"components_h{h}"] = float(sizes.size)
        vals[f"largest_h{h}"] = sizes.max() / counts[h - 1] if sizes.size else np.nan
        units.update({f"fraction_h{h}": "1", f"volume_ml_h{h}": "mL", f"components_h{h}": "1",
                      f"largest_h{h}": "1"})

    vals["entropy_bits"], units["entropy_bits"] = entropy_bits(counts / max(n, 1)), "bits"
    vals["ith_score"], units["ith_score"] = ith_score(labels, k), "1"
    for (a, b), v in msi(labels, k).items():
        vals[f"msi_{a}_{b}"], units[f"msi_{a}_{b}"] = v, "1"
    shape = subject.usable.shape
    for j, (name, unit) in enumerate(zip(subject.names, subject.units)):
        vol = np.zeros(shape)
        vol[subject.usable] = subject.values[:, j]
        glcm = glcm_properties(quantise(vol, subject.usable), labels, k)
        for h in range(1, k + 1):
            st = first_order(subject.values[lab == h, j])
            for stat, physical in FIRST_ORDER:
                col = f"{name}_{stat}_h{h}"
                vals[col], units[col] = st[stat], _unit(unit) if physical else "1"
            for prop, v in glcm[h - 1].items():
                col = f"{name}_glcm_{prop}_h{h}"
                vals[col], units[col] = v, "1"
    return {c: float(v) for c, v in vals.items()}, units
