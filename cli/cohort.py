"""``qmri cohort``: a BIDS App (``BIDS_DIR OUT_DIR participant|group``) running the steps of a TOML
configuration on Dask, one library call (:func:`qmri.cohort.run_cohort`), then a summary and, if any
task failed, the failure table and exit code 1."""

from __future__ import annotations

import sys
from pathlib import Path

from qmri.cli import logs
from qmri.errors import QMRIInputError

#: Row of the README's command table.
USAGE = ("qmri cohort BIDS_DIR OUT_DIR participant\\|group --config steps.toml [--participant-label L ...] "
         "[--workers N \\| --scheduler tls://HOST:PORT]")
SUMMARY = ("cohorts (BIDS App on Dask): fit every subject/session, then habitats and one table per cohort; "
           "resumable")


def add_parser(sub):
    p = sub.add_parser("cohort", help=SUMMARY, description=(
        "Run a cohort, following the BIDS Apps convention. The participant level fits the series of every "
        "subject/session (one Dask task per participant and fit step) into OUT_DIR as a BIDS derivative dataset; "
        "the group level computes the ROI statistics of every map, fits the population habitat model and writes "
        "OUT_DIR/group/cohort.csv, one row per participant (join it to participants.tsv on participant_id). "
        "Tasks whose outputs exist with the same configuration are skipped; a failing task is reported and the "
        "others go on (exit 1, with a table of the failures); logs in OUT_DIR/logs. Default engine: a local Dask "
        "cluster of worker processes on 127.0.0.1, the cores shared among them, speaking TLS with credentials made "
        "for the run (no other account can connect). Start with --example-config."))
    p.add_argument("bids_dir", nargs="?", type=Path, metavar="BIDS_DIR", help="the raw BIDS dataset")
    p.add_argument("out_dir", nargs="?", type=Path, metavar="OUT_DIR",
                   help="the derivative dataset to write (e.g. BIDS_DIR/derivatives/qmri)")
    p.add_argument("level", nargs="?", metavar="participant|group", help="analysis level")
    p.add_argument("--config", type=Path, metavar="TOML", help="the steps (qmri cohort --example-config prints one)")
    p.add_argument("--participant-label", nargs="+", metavar="LABEL",
                   help="subjects to run, e.g. 01 02 (or sub-01); default every one")
    p.add_argument("--example-config", action="store_true",
                   help="print a commented configuration (for the dataset of qmri phantom cohort) and exit")
    e = p.add_argument_group("engine")
    e.add_argument("--workers", type=int, metavar="N",
                   help="worker processes of the local Dask cluster (default: one per 2 cores, at most one per "
                        "task); the cores are shared among them")
    e.add_argument("--scheduler", metavar="tls://HOST:PORT",
                   help="send the tasks to this existing Dask scheduler instead (its workers must see the files "
                        "at the same paths); tls:// with the credentials of the Dask configuration "
                        "(distributed.comm.tls.ca-file, .client.cert, .client.key), or tcp:// (unauthenticated)")
    o = p.add_argument_group("output")
    o.add_argument("--force", action="store_true", help="redo tasks whose outputs exist")
    o.add_argument("--quiet", action="store_true", help="no progress bar and no summary (failures still reported)")
    logs.add_arguments(o)
    # --threads sizes each task on its worker (checked there against the worker's cores), not this process
    p.set_defaults(func=run, threads_per_task=True)
    return p


def run(args) -> int:
    if args.example_config:
        from qmri.cohort.example import EXAMPLE_CONFIG

        sys.stdout.write(EXAMPLE_CONFIG)
        return 0
    if args.bids_dir is None or args.out_dir is None or args.level is None:
        raise QMRIInputError("give BIDS_DIR OUT_DIR participant|group (see 'qmri cohort --help')")
    if args.config is None:
        raise QMRIInputError("--config steps.toml is required (qmri cohort --example-config prints one)")
    from qmri.cohort import run_cohort

    def announce(line):
        if not args.quiet:
            print(f"qmri cohort: {line}", flush=True)

    with logs.session(args, "qmri cohort") as log:
        outcome = run_cohort(args.bids_dir, args.out_dir, args.level, args.config,
                             participant_labels=args.participant_label, scheduler=args.scheduler,
                             workers=args.workers, threads=getattr(args, "threads", None), force=args.force,
                             progress=not args.quiet and sys.stderr.isatty(), on_start=announce)
        for line in outcome.warnings:
            log.warning(line)
    if not args.quiet:
        print(outcome.summary())
    if outcome.failures:
        print(f"qmri cohort: {len(outcome.failures)} task(s) failed (logs in {args.out_dir / 'logs'}):",
              file=sys.stderr)
        print(outcome.failure_table(), file=sys.stderr)
        return 1
    return 0
