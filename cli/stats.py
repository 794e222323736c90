"""``qmri stats``: statistics of maps inside labelled regions, one library call
(:func:`qmri.roistats.stats_from_files`)."""

from __future__ import annotations

import sys
from pathlib import Path

from qmri.cli import logs

#: Row of the README's command table.
USAGE = "qmri stats MAP... --labels LABELS [--names NAMES.tsv] --out TABLE.csv [--wide]"
SUMMARY = "ROI statistics: count, volume, mean, SD, median, quartiles, P10/P90, NaN fraction per map and label"


def add_parser(sub):
    p = sub.add_parser("stats", help=SUMMARY, description=(
        "Statistics of parameter maps inside labelled regions, one row per map and label: map, label, name, "
        "count, volume_ml, mean, sd (sample, ddof=1), median, q1, q3, p10, p90 (linear interpolation, as numpy) "
        "over the finite values, and nan_fraction (voxels of the label without a finite value). The maps must "
        "lie on the labels' grid (use qmri habitat for maps on other grids)."))
    p.add_argument("maps", nargs="+", metavar="MAP", help="FILE.nii.gz (named by the file stem), FOLDER:NAME[,NAME] "
                   "(maps of a qmri output folder) or NAME=FILE")
    p.add_argument("--labels", required=True, type=Path, help="label image (integers, 0 = background)")
    p.add_argument("--names", type=Path, metavar="TSV", help="label names: a BIDS dseg.tsv (columns index, name) or "
                                                             "two tab-separated columns index, name")
    p.add_argument("--out", required=True, metavar="CSV", help="table to write ('-': standard output)")
    p.add_argument("--wide", action="store_true", help="one row per label, columns <map>_<statistic>")
    p.add_argument("--force", action="store_true", help="overwrite the table")
    p.add_argument("--quiet", action="store_true", help="no summary line")
    logs.add_arguments(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from qmri.roistats import stats_from_files

    to_stdout = args.out == "-"
    with logs.session(args, "qmri stats"):
        outcome = stats_from_files(args.maps, args.labels, names=args.names, out=None if to_stdout else args.out,
                                   wide=args.wide, force=args.force)
    if to_stdout:
        sys.stdout.write(outcome.text)
    elif not args.quiet:
        n_maps = len({r["map"] for r in outcome.rows})
        n_labels = len({r["label"] for r in outcome.rows})
        print(f"wrote {args.out}: {n_maps} map(s) x {n_labels} label(s)  (total {outcome.seconds:.2f} s)")
    return 0
