"""Fitting subcommands, generated from the model declarations (``qmri ivim``, ``qmri dce``, ...).

Each command is built from its model class: the series and acquisition inputs of its workflow, the
model's options, ``--bounds`` over its parameters, ``--method`` with the method table's names and
descriptions, and every method's options. Running it is one library call,
:func:`qmri.workflows.fit_files`, then a summary.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qmri.cli import logs
from qmri.cli.options import add_options, given
from qmri.errors import QMRIInputError
from qmri.models.model import parse_bounds
from qmri.workflows import fit_files, workflow
from qmri.workflows.job import method_options


def add_parser(sub, model_cls):
    """Add ``qmri <model_cls.command>`` to the subparsers ``sub``."""
    wf = workflow(model_cls.workflow)
    p = sub.add_parser(model_cls.command, help=model_cls.cli.summary, description=model_cls.cli.description)
    p.add_argument("series", type=Path, metavar=wf.series.upper(), help=wf.series_help)
    add_options(p, wf.inputs(model_cls), title="acquisition")
    p.add_argument("--mask", type=mask_argument, metavar="MASK.nii.gz|auto",
                   help=f"3-D mask NIfTI on the same grid, or auto: {wf.mask_help} (written as mask.nii.gz with the "
                        "maps; the method is recorded in the sidecars); default: every voxel")
    add_options(p, model_cls.options, title="model")
    g = p.add_argument_group("method")
    methods = "; ".join(f"{name}: {m.description}" for name, m in model_cls.methods.items())
    g.add_argument("--method", metavar="|".join(model_cls.methods), help=methods.replace("%", "%%"))
    add_options(g, method_options(model_cls))
    names = ", ".join(model_cls.parameter_names())
    unbounded = [n for n, m in model_cls.methods.items() if not m.bounded]
    g.add_argument("--bounds", help=f"override bounds, NAME=LOWER:UPPER separated by commas, finite, units as the "
                                    f"outputs; LOWER = UPPER fixes NAME (parameters: {names})"
                                    + (f"; refused by --method {'|'.join(unbounded)} (no bounds there)" if unbounded else ""))
    add_output_arguments(p)
    p.set_defaults(func=run, model_cls=model_cls)
    return p


def mask_argument(text):
    """``--mask``: ``auto`` (an automatic mask) or the path of a mask NIfTI."""
    from qmri.masking import AUTO

    return AUTO if text == AUTO else Path(text)


def add_output_arguments(p):
    """``--out-dir``, ``--prefix``, ``--force``, ``--plot``, ``--json``, ``--quiet``, ``--verbose``, ``--log-file``."""
    g = p.add_argument_group("output")
    g.add_argument("--out-dir", required=True, type=Path, help="folder for the maps (created if needed)")
    g.add_argument("--prefix", default="", help="prepended to every output file name")
    g.add_argument("--force", action="store_true", help="overwrite existing outputs")
    g.add_argument("--bids", action=argparse.BooleanOptionalAction, default=None,
                   help="write a BIDS derivative dataset in --out-dir (names sub-<label>[_ses-<label>]..._model-"
                        "<model>_param-<name>_dwimap.nii.gz, T1map...; dataset_description.json); default: when the "
                        "series is in a BIDS dataset and --out-dir is under a derivatives folder")
    g.add_argument("--plot", action="store_true", help="also write maps.png: a grid of slices (rows: the maps, R2 and "
                                                       "status; colour bars with units)")
    g.add_argument("--slices", metavar="Z,Z,...", help="z indices of the slices in maps.png (default: up to 5 through "
                                                       "the fitted voxels)")
    g.add_argument("--json", type=Path, metavar="FILE",
                   help="also write the summary (voxel counts, medians, R2, voxels at bounds, warnings, timings, "
                        "output files) as JSON to FILE ('-': standard output)")
    g.add_argument("--quiet", action="store_true", help="no progress bar and no summary (warnings still go to "
                                                        "standard error)")
    logs.add_arguments(g)


def parse_slices(text):
    """``--slices 3,5,7`` → [3, 5, 7] (None when not given).

    Raises
    ------
    QMRIInputError
        Not comma-separated integers.
    """
    if text is None:
        return None

    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise QMRIInputError(f"--slices: expected comma-separated slice indices, got {text!r}") from None


def show_progress(args) -> bool:
    """A progress bar only on a terminal and without ``--quiet``."""
    return not args.quiet and sys.stderr.isatty()


def run(args) -> int:
    with logs.session(args, f"qmri {args.model_cls.command}") as log:
        return _run(args, log)


def _run(args, log) -> int:
    from qmri import io
    from qmri.resultset import refuse_existing

    cls = args.model_cls
    wf = workflow(cls.workflow)
    to_stdout = str(args.json) == "-"
    if args.json is not None and not to_stdout:
        refuse_existing([args.json], args.force)

    def announce(line):
        if not args.quiet and not to_stdout:
            print(f"qmri {cls.command}: {line}", flush=True)

    outcome = fit_files(cls, args.series, out_dir=args.out_dir, mask=args.mask, method=args.method,
                        prefix=args.prefix, force=args.force, plot=args.plot, progress=show_progress(args),
                        bounds=parse_bounds(args.bounds), model_options=given(args, cls.options),
                        method_options=given(args, method_options(cls)), on_start=announce, bids=args.bids,
                        slices=parse_slices(args.slices),
                        **given(args, wf.inputs(cls)))
    if not args.quiet and not to_stdout:
        print(outcome.maps.summary())
        print(f"wrote {len(outcome.written)} files to {args.out_dir}  (total {outcome.seconds:.2f} s)")
    for line in outcome.warnings:
        log.warning(line)
    if to_stdout:
        print(io.json_text(outcome.summary()))
    elif args.json is not None:
        io.write_json(args.json, outcome.summary())
    return 0
