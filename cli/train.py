"""``qmri train <command>``: train a network estimator (``--method dnn``) for an acquisition, on simulated signals."""

from __future__ import annotations

from pathlib import Path

from qmri.cli.fit import show_progress
from qmri.cli.options import add_options, given
from qmri.models.model import parse_bounds

SUMMARY = "train a network estimator (--method dnn) for an acquisition on simulated signals"


def add_parser(sub):
    from qmri.models import COMMANDS
    from qmri.workflows import WORKFLOWS
    from qmri.workflows.train import OPTIONS, trainable

    p = sub.add_parser("train", help=SUMMARY)
    fam = p.add_subparsers(dest="family", metavar="MODEL", required=True)
    for cls in COMMANDS.values():
        if not trainable(cls):
            continue
        q = fam.add_parser(cls.command, help=f"networks for qmri {cls.command} --method dnn --weights FILE",
                           description=f"Train networks for '{cls.command}' (supervised, on simulated signals with "
                                       "noise over an SNR range) and write a weights file that records the model, "
                                       "protocol, bounds and training.")
        add_options(q, WORKFLOWS[cls.workflow].protocol_inputs(cls), title="acquisition")
        add_options(q, cls.options, title="model")
        q.add_argument("--bounds", help="network output ranges, NAME=LOWER:UPPER separated by commas (default the "
                                        f"model's bounds; parameters: {', '.join(cls.parameter_names())})")
        add_options(q, OPTIONS, title="training")
        g = q.add_argument_group("output")
        g.add_argument("--out", required=True, type=Path, help="weights file to write (.pt)")
        g.add_argument("--force", action="store_true", help="overwrite existing outputs")
        g.add_argument("--plot", action="store_true", help="also write the loss curves as <out>.png")
        g.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
        q.set_defaults(func=run, model_cls=cls)
    return p


def run(args) -> int:
    from qmri.workflows import WORKFLOWS
    from qmri.workflows.train import OPTIONS, train_files

    cls = args.model_cls

    def announce(line):
        if not args.quiet:
            print(f"qmri train {cls.command}: {line}", flush=True)

    outcome = train_files(cls, out=args.out, force=args.force, plot=args.plot, progress=show_progress(args),
                          bounds=parse_bounds(args.bounds), model_options=given(args, cls.options),
                          training=given(args, OPTIONS), on_start=announce,
                          **given(args, WORKFLOWS[cls.workflow].protocol_inputs(cls)))
    if not args.quiet:
        for k, h in enumerate(outcome.trained.histories):
            print(f"network {k + 1}: {h['epochs_run']} epochs, best validation loss {min(h['val_loss']):.4g} "
                  f"(epoch {h['best_epoch']}), {h['seconds']:.1f} s")
        print(f"wrote {', '.join(map(str, outcome.written))}  (total {outcome.seconds:.1f} s)")
    return 0
