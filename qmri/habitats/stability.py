"""Stability of habitats between repeat scans: ``qmri habitat --cohort TEST.csv --stability RETEST.csv``.

The habitat model fitted on (or given for) the first scans labels the repeat scans too; then, per
habitat feature (:mod:`qmri.habitats.radiomics`), the ICC(2,1) (two-way random, absolute agreement)
and ICC(3,1) with their 95 % confidence intervals over the subjects scanned twice
(:func:`qmri.outcomestats.icc`; McGraw & Wong 1996), and per subject and habitat the Dice coefficient
of the two habitat maps (the repeat's labels taken onto the first scan's grid by nearest neighbour
when the grids differ). ``stability.csv`` is what ``qmri predict --stability ... --min-icc 0.5``
reads (Prior et al. 2024, PMC10982821, kept features whose lower confidence limit is >= 0.5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qmri import io
from qmri.errors import QMRIInputError
from qmri.habitats.analysis import analyse
from qmri.habitats.features import load_subject, read_cohort, resample_to_grid, same_grid
from qmri.habitats.radiomics import subject_features
from qmri.outcomestats import dice, icc
from qmri.resultset import write_sets
from qmri.roistats import rows_to_csv

STABILITY_TABLE, DICE_TABLE = "stability.csv", "dice.csv"


def pair_ids(first, second, where: str) -> list[tuple[int, int]]:
    """``(index in first, index in second)`` of the subjects in both lists of ids (an id matches
    itself or its participant: ``sub-01_ses-2`` → ``sub-01``).

    Raises
    ------
    QMRIInputError
        Fewer than 3 subjects in both.
    """
    def key(sid):
        return sid.split("_ses-")[0]

    index = {key(s): j for j, s in enumerate(second)}
    pairs = [(i, index[key(s)]) for i, s in enumerate(first) if key(s) in index]
    if len(pairs) < 3:
        raise QMRIInputError(f"{where}: {len(pairs)} subject(s) in both scans; the ICC needs at least 3")
    return pairs


def labels_on_grid(labels, affine, shape, target_affine) -> np.ndarray:
    """A label map taken onto another grid by nearest neighbour (scanner coordinates)."""
    if same_grid(labels.shape, affine, shape, target_affine):
        return labels
    out = resample_to_grid(labels.astype(np.float64), affine, shape, target_affine, order=0)
    return np.nan_to_num(out).astype(np.uint8)


def stability(first, second, k: int, where: str = "retest") -> tuple[list[dict], list[dict]]:
    """ICC rows (one per feature) and Dice rows (one per subject and habitat) of two labelled scans.

    Parameters
    ----------
    first, second : list of qmri.habitats.analysis.SubjectResult
        The same subjects' results, labelled by the same habitat model.
    k : int

    Returns
    -------
    (icc rows, dice rows)
    """
    pairs = pair_ids([r.subject.id for r in first], [r.subject.id for r in second], where)
    vals, units = [], None
    dice_rows = []
    for i, j in pairs:
        a, b = first[i], second[j]
        va, ua = subject_features(a.labels, a.subject, k)
        vb, _ = subject_features(b.labels, b.subject, k)
        vals.append((va, vb))
        units = units or ua
        lb = labels_on_grid(b.labels, b.subject.affine, a.labels.shape, a.subject.affine)
        for h in range(1, k + 1):
            dice_rows.append({"id": a.subject.id, "retest_id": b.subject.id, "habitat": h,
                              "dice": dice(a.labels == h, lb == h)})
    rows = []
    for name in vals[0][0]:
        x = np.array([[va[name], vb[name]] for va, vb in vals])
        r = icc(x)
        rows.append({"feature": name, "unit": units[name], "n": r["n"], "icc2_1": r["icc2_1"],
                     "icc2_1_ci_low": r["icc2_1_ci"][0], "icc2_1_ci_high": r["icc2_1_ci"][1], "icc3_1": r["icc3_1"],
                     "icc3_1_ci_low": r["icc3_1_ci"][0], "icc3_1_ci_high": r["icc3_1_ci"][1]})
    return rows, dice_rows


def stability_from_files(result, retest, out_dir, *, resample: bool = True, force: bool = False) -> tuple[list, dict]:
    """Label the subjects of the ``retest`` cohort table with ``result``'s model, write
    ``stability.csv`` and ``dice.csv`` into ``out_dir``; return the written paths and a summary.

    Raises
    ------
    QMRIInputError
        Unreadable retest table, maps that differ from the model's, fewer than 3 subjects in both.
    OutputExistsError
        An output exists and ``force`` is False.
    """
    _, rows = read_cohort(retest)
    subjects = [load_subject(sid, m, srcs, resample=resample) for sid, m, srcs in rows]
    again = analyse(subjects, model=result.model, statistics=False)
    icc_rows, dice_rows = stability(result.subjects, again.subjects, result.model.k, str(retest))
    out = Path(out_dir)
    written = write_sets({out / STABILITY_TABLE: lambda p: io.write_text(p, rows_to_csv(icc_rows)),
                          out / DICE_TABLE: lambda p: io.write_text(p, rows_to_csv(dice_rows))}, force=force)
    low = np.array([r["icc2_1_ci_low"] for r in icc_rows], dtype=float)
    d = np.array([r["dice"] for r in dice_rows], dtype=float)
    summary = {"features": len(icc_rows), "stable_0.5": int(np.sum(low >= 0.5)), "subjects": icc_rows[0]["n"],
               "dice_mean": float(np.nanmean(d)) if d.size else float("nan")}
    return written, summary
