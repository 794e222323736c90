"""From files to files: :func:`habitats_from_files`, the one library call of ``qmri habitat``.

Inputs: a list of maps and an ROI mask (one subject), or a cohort table (``id,mask,<feature>...``,
one row of paths per subject). Every input is read and checked, and every output path is checked
against overwriting, before anything is written; outputs are written atomically.

Outputs per subject (in ``OUT``, or ``OUT/<id>/`` for a cohort): ``habitats.nii.gz`` (uint8, 0
outside the ROI and in dropped voxels, 1..k inside, on the mask's grid), ``habitats.json`` (inputs,
resampling, settings, per-habitat statistics, entropy, adjacency), ``habitats.csv`` (one row per
habitat) and, with ``plot``, ``habitats.png``. A cohort also gets ``OUT/subjects.csv`` (one row per
subject, ready to join a clinical table on ``id``); ``--k auto`` writes ``OUT/k_selection.csv``.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qmri import __version__
from qmri.errors import QMRIInputError
from qmri.resultset import refuse_existing, write_sets
from qmri.roistats import rows_to_csv

SUBJECT_OUTPUTS = ("habitats.nii.gz", "habitats.json", "habitats.csv")
FIGURE = "habitats.png"
COHORT_TABLE = "subjects.csv"
K_TABLE = "k_selection.csv"


@dataclass
class HabitatOutcome:
    """What :func:`habitats_from_files` did."""

    result: object
    written: list = field(default_factory=list)
    seconds: float = 0.0
    cohort: bool = False
    stability: dict | None = None


def subject_inputs(*, maps=None, mask=None, cohort=None) -> tuple[list, bool]:
    """``[(id, mask path, [MapSource])], is_cohort`` from either ``maps`` + ``mask`` or ``cohort``.

    Raises
    ------
    QMRIInputError
        Both or neither of the two forms; unreadable cohort table; maps without a mask.
    """
    from qmri.habitats.features import parse_map_argument, read_cohort

    if cohort is not None:
        if maps or mask is not None:
            raise QMRIInputError("give either --cohort or --maps with --mask, not both")
        return read_cohort(cohort)[1], True
    if not maps or mask is None:
        raise QMRIInputError("give --maps and --mask (one subject) or --cohort TABLE.csv")
    sources = [src for m in maps for src in parse_map_argument(str(m))]
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise QMRIInputError(f"--maps: feature names repeat ({', '.join(names)}); name them NAME=FILE")
    mask = Path(mask)
    return [(mask.name.split(".")[0] or "subject", mask, sources)], False


def subject_dir(out_dir, subject_id: str, cohort: bool) -> Path:
    return Path(out_dir) / subject_id if cohort else Path(out_dir)


def planned_outputs(out_dir, ids, *, cohort: bool, plot: bool, k_table: bool, save_model=None) -> list[Path]:
    """Every file :func:`habitats_from_files` writes."""
    paths = []
    for sid in ids:
        d = subject_dir(out_dir, sid, cohort)
        paths += [d / name for name in SUBJECT_OUTPUTS] + ([d / FIGURE] if plot else [])
    if cohort:
        paths.append(Path(out_dir) / COHORT_TABLE)
    if k_table:
        paths.append(Path(out_dir) / K_TABLE)
    if save_model is not None:
        paths.append(Path(save_model))
    return paths


def habitats_from_files(*, out_dir, maps=None, mask=None, cohort=None, model=None, save_model=None,
                        resample: bool = True, force: bool = False, plot: bool = False, on_start=None,
                        stability=None, **settings) -> HabitatOutcome:
    """Habitat analysis of maps on disk: what ``qmri habitat`` does.

    Parameters
    ----------
    out_dir : path
        Output folder (created if needed).
    maps : list of str, optional
        ``FILE.nii.gz`` (feature named by the file stem), ``FOLDER:NAME[,NAME]`` (maps of a qmri output
        folder) or ``NAME=FILE``; with ``mask``.
    mask : path, optional
        The ROI (its grid is the grid of the outputs).
    cohort : path, optional
        Cohort table ``id,mask,<feature>...`` (relative paths from its folder).
    model : path, optional
        A saved habitat model to apply (no clustering setting may then be given).
    save_model : path, optional
        Where to write the fitted model (JSON).
    resample : bool
        Resample maps on another grid onto the mask's (default); False makes it an error.
    force : bool
        Overwrite existing outputs.
    plot : bool
        Also write ``habitats.png`` per subject.
    stability : path, optional
        Cohort table of repeat scans of the cohort's subjects: labelled with the same model, then
        ``stability.csv`` and ``dice.csv`` (:mod:`qmri.habitats.stability`).
    on_start : callable, optional
        Called with a one-line description once the inputs are read, before clustering.
    **settings
        Clustering settings (:data:`qmri.habitats.analysis.OPTIONS`).

    Returns
    -------
    HabitatOutcome

    Raises
    ------
    QMRIInputError
        Any bad input (one line naming the file and the problem); nothing is written.
    OutputExistsError
        An output exists and ``force`` is False; nothing is written.
    """
    from qmri.habitats.analysis import analyse, resolve_settings
    from qmri.habitats.features import load_subject
    from qmri.habitats.model import HabitatModel

    t0 = time.perf_counter()
    rows, is_cohort = subject_inputs(maps=maps, mask=mask, cohort=cohort)
    fitted_model = None
    if model is not None:
        if settings:
            raise QMRIInputError(f"--model fixes the clustering settings; drop "
                                 f"{', '.join('--' + k.replace('_', '-') for k in settings)}")
        fitted_model = HabitatModel.load(model)
        k_auto = False
    else:
        k_auto = resolve_settings(settings)["k"] == "auto"
    extra = []
    if stability is not None:
        from qmri.habitats.stability import DICE_TABLE, STABILITY_TABLE

        if not is_cohort:
            raise QMRIInputError("--stability compares two cohorts: give --cohort TEST.csv --stability RETEST.csv")
        if not Path(stability).is_file():
            raise QMRIInputError(f"{stability}: cohort table not found")
        extra = [Path(out_dir) / STABILITY_TABLE, Path(out_dir) / DICE_TABLE]
    refuse_existing(planned_outputs(out_dir, [r[0] for r in rows], cohort=is_cohort, plot=plot, k_table=k_auto,
                                    save_model=save_model) + extra, force)
    subjects = [load_subject(sid, m, srcs, resample=resample) for sid, m, srcs in rows]
    if on_start is not None:
        n = sum(x.values.shape[0] for x in subjects)
        on_start(f"{len(subjects)} subject(s), {n} voxels, features {', '.join(subjects[0].names)}"
                 + (f"; model {model}" if model is not None else ""))
    result = analyse(subjects, model=fitted_model, **settings)
    written = write_outputs(result, out_dir, cohort=is_cohort, plot=plot, force=force,
                            model_path=model or save_model)
    if save_model is not None:
        written.append(result.model.save(save_model, force=force))
    st = None
    if stability is not None:
        from qmri.habitats.stability import stability_from_files

        paths, st = stability_from_files(result, stability, out_dir, resample=resample, force=force)
        written += paths
    return HabitatOutcome(result, written, time.perf_counter() - t0, is_cohort, st)


def subject_record(r, model, model_path=None) -> dict:
    """The ``habitats.json`` content of one subject's result ``r``."""
    x, m = r.subject, model
    s = m.settings
    return {
        "QmriVersion": __version__,
        "Created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "Subject": x.id,
        "Sources": x.sources,
        "Features": [{"name": n, "unit": u, "resampled": x.resampled.get(n, "no (on the mask's grid)")}
                     for n, u in zip(x.names, x.units)],
        "Labels": f"0 outside the ROI and in dropped voxels; 1..{m.k} habitats in ascending order of the class "
                  f"mean of {s['order_by']}",
        "RoiVoxels": int(x.roi.sum()),
        "DroppedVoxels": x.n_dropped,
        "DroppedBecause": "a feature is NaN or infinite there",
        "VoxelVolumeMl": x.voxel_ml,
        "Normalisation": s["normalise"],
        "Method": s["method"],
        "Spatial": s["spatial"],
        "Settings": s,
        "K": m.k,
        "KSelection": m.k_selection,
        "Model": None if model_path is None else str(model_path),
        "Habitats": r.stats["habitats"],
        "EntropyBits": r.stats["entropy_bits"],
        "AdjacencyLabels": list(range(m.k + 1)),
        "Adjacency": r.stats["adjacency"],
        "AdjacencyMeaning": "face-adjacent voxel pairs between labels; 0 = outside the labelled ROI",
    }


def write_outputs(result, out_dir, *, cohort: bool, plot: bool, force: bool = False, model_path=None) -> list[Path]:
    """Write every subject's outputs, the cohort table and the k table: the files of each folder as
    one :class:`qmri.resultset.ResultSet` (all of them or none, even if the process is killed)."""
    from qmri import io
    from qmri.habitats.statistics import cohort_row, habitat_table

    model = result.model
    writers = {}  # final path -> function(path to write)
    for r in result.subjects:
        d = subject_dir(out_dir, r.subject.id, cohort)
        writers[d / "habitats.nii.gz"] = lambda p, r=r: io.write_map(
            p, r.labels, affine=r.subject.affine, header=r.subject.header, dtype=np.uint8,
            intent=f"habitats 1..{model.k}")
        writers[d / "habitats.json"] = lambda p, r=r: io.write_json(p, subject_record(r, model, model_path))
        writers[d / "habitats.csv"] = lambda p, r=r: io.write_text(p, habitat_table(r.stats, r.subject.names))
        if plot:
            from qmri.habitats.figures import habitat_figure

            writers[d / FIGURE] = lambda p, r=r: habitat_figure(r, p)
    if cohort:
        rows = [cohort_row(r.subject.id, r.stats, r.subject.names, r.subject.n_dropped) for r in result.subjects]
        writers[Path(out_dir) / COHORT_TABLE] = lambda p: io.write_text(p, rows_to_csv(rows))
    if result.fitted and model.k_selection is not None:
        from qmri.habitats.choose_k import KScan

        scan = KScan(model.k_selection["rows"], model.k_selection["chosen"])
        writers[Path(out_dir) / K_TABLE] = lambda p: io.write_text(p, scan.table())
    return write_sets(writers, force=force)


def summary(outcome: HabitatOutcome) -> str:
    """A few lines: the model (method, k and how, normalisation, spatial model), one row per subject
    (voxels, dropped, fraction of each habitat, entropy), then each habitat's mean features with
    their units (none shown for a dimensionless feature)."""
    m = outcome.result.model
    s = m.settings
    how = "fixed"
    if m.k_selection is not None:
        row = next(r for r in m.k_selection["rows"] if r["k"] == m.k)
        how = f"auto: silhouette {row['silhouette']:.3f}, CH {row['calinski_harabasz']:.4g}, BIC {row['bic']:.6g}"
    src = "fitted" if outcome.result.fitted else "saved model"
    lines = [f"{src}: {s['method']}, k = {m.k} ({how}), normalisation {s['normalise']}, spatial {s['spatial']}"
             + (f" (beta {s['beta']:g})" if s["spatial"] == "mrf" else "")
             + f", habitats ordered by {s['order_by']}"]
    head = ["subject", "voxels", "dropped"] + [f"h{h}" for h in range(1, m.k + 1)] + ["entropy"]
    cells = []
    for r in outcome.result.subjects:
        fr = [f"{100 * h['fraction']:.1f}%" for h in r.stats["habitats"]]
        cells.append([r.subject.id, str(r.stats["labelled_voxels"]), str(r.subject.n_dropped)] + fr
                     + [f"{r.stats['entropy_bits']:.2f}"])
    widths = [max(len(c[i]) for c in [head] + cells) for i in range(len(head))]
    lines.append("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths))))
    for c in cells:
        lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(c, widths))))
    means = "; ".join(f"h{h + 1}: " + ", ".join(f"{n} {v:.3g}{f' {u}' if u else ''}"
                                               for n, u, v in zip(m.names, m.units, _class_means(outcome, h)))
                      for h in range(m.k))
    lines.append(f"mean features per habitat (all subjects): {means}")
    return "\n".join(lines)


def _class_means(outcome, h: int) -> np.ndarray:
    vals = [r.subject.values[r.labels[r.subject.usable] == h + 1] for r in outcome.result.subjects]
    vals = np.concatenate(vals) if vals else np.empty((0, 0))
    return vals.mean(axis=0) if vals.size else np.full(len(outcome.result.model.names), np.nan)
