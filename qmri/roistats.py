"""Statistics of maps inside labelled regions: the table oncology studies report.

One row per map and label (long format): ``map, unit, label, name, count, volume_ml, mean, sd,
median, q1, q3, p10, p90, nan_fraction``; ``unit`` is the map's (from its sidecar), the unit of its
statistics ``mean`` to ``p90``. ``count`` is the number of voxels carrying the label and
``volume_ml`` their volume; the statistics are over the label's voxels whose value is finite, and
``nan_fraction`` is the fraction of the label's voxels whose value is not (NaN outside a fit's mask,
failed fits). ``sd`` is the sample standard deviation (``ddof=1``), quantiles are linear
interpolation between order statistics (NumPy's default, Hyndman & Fan type 7, as R's default).

:func:`label_statistics` serves ``qmri stats`` and the per-habitat statistics of
:mod:`qmri.habitats.statistics`; :func:`stats_from_files` is the one library call of ``qmri stats``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qmri import __version__
from qmri.errors import QMRIInputError
from qmri.mapsources import parse_map_argument, read_source, same_grid
from qmri.resultset import refuse_existing, write_sets

#: Statistics of one region, in the order of the table's columns.
STATISTICS = ("mean", "sd", "median", "q1", "q3", "p10", "p90", "nan_fraction")
#: Columns of the long table.
COLUMNS = ("map", "unit", "label", "name", "count", "volume_ml") + STATISTICS
#: What the columns other than the statistics hold, and their units, for the table's JSON sidecar.
_COLUMN_MEANING = {
    "map": ("parameter map", None),
    "unit": ("unit of the map's values (empty: dimensionless or unknown); the unit of mean to p90", None),
    "label": ("label value in the label image", None),
    "name": ("label name (from --names)", None),
    "count": ("voxels carrying the label", "voxels"),
    "volume_ml": ("volume of those voxels", "mL"),
}
_STATISTIC_MEANING = {
    "mean": "mean of the finite values", "sd": "sample standard deviation (ddof=1) of the finite values",
    "median": "median of the finite values", "q1": "25th percentile (linear interpolation)",
    "q3": "75th percentile (linear interpolation)", "p10": "10th percentile (linear interpolation)",
    "p90": "90th percentile (linear interpolation)",
    "nan_fraction": "fraction of the label's voxels without a finite value (outside the fit's mask, failed fits)",
}
_QUANTILES = {"median": 50.0, "q1": 25.0, "q3": 75.0, "p10": 10.0, "p90": 90.0}


def region_statistics(values) -> dict:
    """``count`` and :data:`STATISTICS` of the values of one region (statistics over the finite ones;
    NaN when there is none; ``sd`` NaN below 2 finite values)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    finite = v[np.isfinite(v)]
    out = {"count": int(v.size)}
    if finite.size:
        out["mean"] = float(finite.mean())
        out["sd"] = float(finite.std(ddof=1)) if finite.size > 1 else float("nan")
        qs = np.percentile(finite, list(_QUANTILES.values()))
        out.update({k: float(q) for k, q in zip(_QUANTILES, qs)})
    else:
        out.update({k: float("nan") for k in STATISTICS})
    out["nan_fraction"] = float(1.0 - finite.size / v.size) if v.size else float("nan")
    return {k: out[k] for k in ("count",) + STATISTICS}


def label_statistics(values, labels, ids=None) -> dict[int, dict]:
    """:func:`region_statistics` of ``values`` per label.

    Parameters
    ----------
    values : array_like
        Any shape; NaN where there is no value.
    labels : array_like of int
        Same shape; 0 is background.
    ids : iterable of int, optional
        Labels to report (default every non-zero label present); an absent one gets count 0.

    Returns
    -------
    dict of int to dict
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    lab = np.asarray(labels).ravel()
    if v.shape != lab.shape:
        raise ValueError(f"values {v.shape} and labels {lab.shape} differ in size")
    ids = sorted(int(i) for i in np.unique(lab) if i != 0) if ids is None else [int(i) for i in ids]
    order = np.argsort(lab, kind="stable")
    sorted_lab = lab[order]
    out = {}
    for i in ids:
        lo, hi = np.searchsorted(sorted_lab, i, "left"), np.searchsorted(sorted_lab, i, "right")
        out[i] = region_statistics(v[order[lo:hi]])
    return out


def long_table(maps: dict, labels, *, names: dict | None = None, voxel_ml: float = float("nan"),
               units: dict | None = None) -> list[dict]:
    """Rows of the long table (:data:`COLUMNS`) for maps ``{name: array}`` on the grid of ``labels``;
    ``units`` ``{name: unit}`` (empty where absent).

    Labels reported: those present (non-zero) and those named in ``names`` (count 0 when absent).
    """
    names = names or {}
    units = units or {}
    present = {int(i) for i in np.unique(np.asarray(labels)) if i != 0}
    ids = sorted(present | set(names))
    rows = []
    for map_name, values in maps.items():
        for label, s in label_statistics(values, labels, ids).items():
            rows.append({"map": map_name, "unit": units.get(map_name, ""), "label": label,
                         "name": names.get(label, ""), "count": s["count"],
                         "volume_ml": s["count"] * voxel_ml, **{k: s[k] for k in STATISTICS}})
    return rows


def wide_table(rows: list[dict]) -> list[dict]:
    """The long rows pivoted: one row per label, ``<map>_<statistic>`` columns (their units in the
    table's sidecar, :func:`table_sidecar`)."""
    out = {}
    for r in rows:
        row = out.setdefault(r["label"], {"label": r["label"], "name": r["name"], "count": r["count"],
                                          "volume_ml": r["volume_ml"]})
        row.update({f"{r['map']}_{k}": r[k] for k in STATISTICS})
    return [out[k] for k in sorted(out)]


def rows_to_csv(rows, digits: int = 6) -> str:
    """CSV text of a list of flat dicts sharing their keys (floats with ``digits`` significant digits,
    NaN as ``nan``)."""
    keys = list(rows[0])
    lines = [",".join(keys)]
    for r in rows:
        lines.append(",".join(f"{r[k]:.{digits}g}" if isinstance(r[k], float) else _cell(r[k]) for k in keys))
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def read_label_names(path) -> dict[int, str]:
    """Label names from a TSV: a BIDS ``dseg.tsv`` (header with ``index`` and ``name`` columns) or two
    columns ``index<TAB>name`` without header.

    Raises
    ------
    QMRIInputError
        Missing or unreadable file (not UTF-8 text), no ``index``/``name`` columns, an index that is not
        an integer, a repeated index.
    """
    path = Path(path)
    if not path.is_file():
        raise QMRIInputError(f"{path}: label names file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise QMRIInputError(f"{path}: label names file is not UTF-8 text (byte {exc.start}); expected a "
                             "tab-separated table index<TAB>name") from None
    except OSError as exc:
        raise QMRIInputError(f"{path}: cannot read the label names ({exc.strerror or exc})") from None
    lines = [ln.rstrip("\n\r") for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise QMRIInputError(f"{path}: no label names")
    head = [c.strip().lower() for c in lines[0].split("\t")]
    if "index" in head and "name" in head:
        i_col, n_col, first = head.index("index"), head.index("name"), 1
    else:
        i_col, n_col, first = 0, 1, 0
    out = {}
    for k, line in enumerate(lines[first:], start=first + 1):
        cells = line.split("\t")
        if len(cells) <= max(i_col, n_col):
            raise QMRIInputError(f"{path}: line {k}: expected tab-separated index and name")
        try:
            idx = int(cells[i_col])
        except ValueError:
            raise QMRIInputError(f"{path}: index {cells[i_col]!r} is not an integer (the file needs a header "
                                 "'index<TAB>name' or two columns index, name)") from None
        if idx in out:
            raise QMRIInputError(f"{path}: index {idx} appears twice")
        out[idx] = cells[n_col].strip()
    return out


def table_sidecar(rows: list[dict], *, wide: bool, labels=None, sources=()) -> dict:
    """The JSON sidecar of a ``qmri stats`` table: what each column holds and its unit (``Columns``:
    ``{column: {"Description", "Units"}}``, as BIDS describes the columns of tabular files), the
    label image, the maps read and each map's unit (``MapUnits``)."""
    units = {r["map"]: r["unit"] for r in rows}
    columns = {col: {"Description": text, **({"Units": unit} if unit else {})}
               for col, (text, unit) in _COLUMN_MEANING.items() if not (wide and col in ("map", "unit"))}
    for name in (units if wide else [None]):
        for stat, text in _STATISTIC_MEANING.items():
            unit = "1" if stat == "nan_fraction" else units[name] if wide else None
            if wide:
                col, entry = f"{name}_{stat}", f"{text} of {name}"
            else:
                col, entry = stat, text if unit else f"{text}, in the row's unit (column unit)"
            columns[col] = {"Description": entry, **({"Units": unit} if unit else {})}
    return {"QmriVersion": __version__,
            "Description": "qmri stats: statistics of parameter maps inside labelled regions, "
                           + ("one row per label" if wide else "one row per map and label"),
            "Labels": None if labels is None else str(labels), "Sources": [str(x) for x in sources],
            "MapUnits": units, "Columns": columns}


@dataclass
class StatsOutcome:
    """What :func:`stats_from_files` did: the rows (long format), the table written, the seconds."""

    rows: list
    text: str
    written: list = field(default_factory=list)
    seconds: float = 0.0


def stats_from_files(maps, labels, *, names=None, out=None, wide: bool = False, force: bool = False,
                     digits: int = 8) -> StatsOutcome:
    """ROI statistics of maps on disk: what ``qmri stats`` does.

    Parameters
    ----------
    maps : list of str
        ``FILE.nii.gz`` (named by the file stem), ``FOLDER:NAME[,NAME]`` (maps of a qmri output
        folder) or ``NAME=FILE`` (:func:`qmri.mapsources.parse_map_argument`).
    labels : path
        Label image (integers, 0 background); its grid is the maps' grid.
    names : path, optional
        Label names (:func:`read_label_names`).
    out : path, optional
        CSV to write, with its JSON sidecar (:func:`table_sidecar`, ``roi.csv`` → ``roi.json``), as one
        result set (None: only returned).
    wide : bool
        One row per label (:func:`wide_table`).
    force : bool
        Overwrite ``out``.
    digits : int
        Significant digits of the numbers in the CSV.

    Raises
    ------
    QMRIInputError
        Unreadable files, a map not on the labels' grid (no resampling: that is what ``qmri
        habitat`` does), labels that are not integers, repeated map names.
    OutputExistsError
        ``out`` exists and ``force`` is False.
    """
    from qmri import io

    t0 = time.perf_counter()
    if out is not None:
        out = Path(out)
        if sidecar_of(out) == out:
            raise QMRIInputError(f"{out}: the table's JSON sidecar would have its name; name the table .csv")
        refuse_existing([out, sidecar_of(out)], force)
    img = io.load_nifti(labels, ndim=(3, 4), what="label image")
    if len(img.shape) == 4 and img.shape[3] != 1:
        raise QMRIInputError(f"{labels}: label image must be 3-D, got shape {img.shape}")
    lab = io.image_data(img).reshape(img.shape[:3])
    lab = np.nan_to_num(lab)
    if np.any(lab != np.round(lab)):
        bad = lab[lab != np.round(lab)][0]
        raise QMRIInputError(f"{labels}: labels must be integers (0 background), found {bad:g}")
    lab = lab.astype(np.int64)
    voxel_ml = float(np.prod(img.header.get_zooms()[:3])) / 1000.0
    label_names = read_label_names(names) if names is not None else {}
    sources = [s for m in maps for s in parse_map_argument(str(m))]
    seen = [s.name for s in sources]
    if len(set(seen)) != len(seen):
        raise QMRIInputError(f"maps named twice ({', '.join(seen)}); name them NAME=FILE")
    values, units, cache = {}, {}, {}
    for src in sources:
        data, affine, units[src.name], _ = read_source(src, cache)
        if not same_grid(data.shape, affine, lab.shape, img.affine):
            raise QMRIInputError(f"{src.describe()}: map {src.name} is not on the grid of {labels} "
                                 f"(shape {data.shape} vs {lab.shape} or a different affine); resample it first")
        values[src.name] = data
    rows = long_table(values, lab, names=label_names, voxel_ml=voxel_ml, units=units)
    if not rows:
        raise QMRIInputError(f"{labels}: no labelled voxel (every value is 0)")
    text = rows_to_csv(wide_table(rows) if wide else rows, digits)
    written = []
    if out is not None:
        meta = table_sidecar(rows, wide=wide, labels=labels, sources=[s.describe() for s in sources])
        written = write_sets({out: lambda p: io.write_text(p, text),
                              sidecar_of(out): lambda p: io.write_json(p, meta)}, force=force)
    return StatsOutcome(rows, text, written, time.perf_counter() - t0)


def sidecar_of(table) -> Path:
    """The JSON sidecar beside a table: ``roi.csv`` → ``roi.json``."""
    table = Path(table)
    return table.with_name(table.stem + ".json") if table.suffix else table.with_name(table.name + ".json")
