"""Per-habitat and tumour-level statistics of one subject's habitat map.

Per habitat: voxel count, volume (mL, from the voxel size), fraction of the labelled ROI, mean,
median and interquartile range of every feature (:func:`qmri.roistats.label_statistics`, shared
with ``qmri stats``) (physical units, on the ROI's grid), and the number
of connected components (face connectivity, 6 neighbours in 3-D). Per tumour: the Shannon entropy of
the fractions (bits; 0 for one habitat, log2 k for k equal fractions) and the habitat adjacency
matrix: the number of face-adjacent voxel pairs between every two labels, 0 being outside the
labelled ROI (the co-occurrence counts behind the multiregional spatial interaction matrix of Wu J
et al., Radiology 2018;288:26).
"""

from __future__ import annotations

import numpy as np

from qmri.roistats import label_statistics


def connected_components(mask: np.ndarray) -> int:
    """Number of face-connected components of a boolean volume."""
    from scipy import ndimage

    return int(ndimage.label(mask)[1])


def entropy_bits(fractions) -> float:
    """Shannon entropy ``-Σ p log2 p`` of fractions (zeros skipped)."""
    p = np.asarray(fractions, dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) if p.size else 0.0


def adjacency(labels: np.ndarray, k: int) -> np.ndarray:
    """(k+1, k+1) symmetric counts of face-adjacent voxel pairs by label (0 = outside; the
    outside–outside count is 0). The diagonal counts pairs inside one habitat."""
    vol = np.pad(np.asarray(labels, dtype=np.int64), 1)
    counts = np.zeros((k + 1) * (k + 1), dtype=np.int64)
    for ax in range(vol.ndim):
        a = np.moveaxis(vol, ax, 0)
        pair = a[:-1] * (k + 1) + a[1:]
        counts += np.bincount(pair.ravel(), minlength=(k + 1) ** 2)
    m = counts.reshape(k + 1, k + 1)
    sym = m + m.T
    np.fill_diagonal(sym, np.diag(m))
    sym[0, 0] = 0
    return sym


def habitat_statistics(labels: np.ndarray, values: np.ndarray, usable: np.ndarray, names, units, k: int,
                       voxel_ml: float) -> dict:
    """Statistics of one subject's habitats.

    Parameters
    ----------
    labels : ndarray of uint8 (X, Y, Z)
        0 outside the labelled voxels, 1..k inside.
    values : ndarray (n, F)
        Feature values (physical units) of the ``usable`` voxels, C order.
    usable : ndarray of bool (X, Y, Z)
        The labelled voxels.
    names, units : list of str
    k : int
    voxel_ml : float
        Volume of one voxel in mL.

    Returns
    -------
    dict
        ``habitats`` (list of per-habitat dicts), ``entropy_bits``, ``adjacency`` ((k+1)² nested
        list, label 0 first), ``labelled_voxels``, ``labelled_volume_ml``.
    """
    lab = labels[usable]
    n = lab.size
    per_feature = [label_statistics(values[:, j], lab, range(1, k + 1)) for j in range(len(names))]
    rows = []
    for h in range(1, k + 1):
        count = int(np.sum(lab == h))
        row = {"habitat": h, "voxels": count, "volume_ml": float(count * voxel_ml),
               "fraction": count / n if n else 0.0, "components": connected_components(labels == h)}
        row["features"] = {name: {"mean": st[h]["mean"], "median": st[h]["median"], "iqr": st[h]["q3"] - st[h]["q1"],
                                  "unit": unit} for name, unit, st in zip(names, units, per_feature)}
        rows.append(row)
    return {"habitats": rows, "entropy_bits": entropy_bits([r["fraction"] for r in rows]),
            "adjacency": adjacency(labels, k).tolist(), "labelled_voxels": int(n),
            "labelled_volume_ml": float(n * voxel_ml)}


def habitat_table(stats: dict, names) -> str:
    """CSV text: one row per habitat (voxels, volume_ml, fraction, components, mean/median/IQR of
    each feature)."""
    head = ["habitat", "voxels", "volume_ml", "fraction", "components"]
    for name in names:
        head += [f"{name}_mean", f"{name}_median", f"{name}_iqr"]
    lines = [",".join(head)]
    for r in stats["habitats"]:
        cells = [str(r["habitat"]), str(r["voxels"]), f"{r['volume_ml']:.6g}", f"{r['fraction']:.6g}",
                 str(r["components"])]
        for name in names:
            f = r["features"][name]
            cells += [f"{f['mean']:.6g}", f"{f['median']:.6g}", f"{f['iqr']:.6g}"]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def cohort_row(subject_id: str, stats: dict, names, n_dropped: int) -> dict:
    """One subject's row of the cohort table: labelled voxels and volume, dropped voxels, entropy,
    then per habitat its fraction, volume and the mean of each feature (ready to join a clinical
    table on ``id``)."""
    row = {"id": subject_id, "labelled_voxels": stats["labelled_voxels"],
           "volume_ml": stats["labelled_volume_ml"], "dropped_voxels": n_dropped,
           "entropy_bits": stats["entropy_bits"]}
    for r in stats["habitats"]:
        h = r["habitat"]
        row[f"fraction_h{h}"] = r["fraction"]
        row[f"volume_ml_h{h}"] = r["volume_ml"]
        row[f"components_h{h}"] = r["components"]
        for name in names:
            row[f"{name}_mean_h{h}"] = r["features"][name]["mean"]
    return row
