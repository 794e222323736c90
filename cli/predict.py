"""``qmri predict``: outcome models from habitats, validated without leaks, one library call
(:func:`qmri.workflows.predict_files.predict_from_files`), then a summary; ``--compare`` runs
DeLong's test on two ``predictions.csv``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from qmri.cli.options import add_options, given
from qmri.errors import QMRIInputError

#: Row of the README's command table.
USAGE = ("qmri predict --cohort CSV\\|--table CSV --outcome FILE:COLUMN --out-dir OUT \\| --model MODEL.json "
         "--cohort CSV [--external FILE:COLUMN]")
SUMMARY = ("outcome models from habitats: nested repeated cross-validation (habitats refitted per fold), AUC with CI, "
           "calibration, decision curve, saved model")


def _clustering_options():
    from qmri.habitats.analysis import OPTIONS
    from qmri.workflows.predict import DEFAULT_K

    k = dataclasses.replace(OPTIONS[0], help=f"number of habitats, fixed (features are named by habitat; "
                                             f"default {DEFAULT_K})", default=DEFAULT_K, metavar="N")
    # --seed is the prediction's, and also seeds the clustering
    return (k,) + tuple(o for o in OPTIONS[1:] if o.name != "seed")


def add_parser(sub):
    from qmri.workflows.predict import OPTIONS

    p = sub.add_parser("predict", help=SUMMARY, description=(
        "Predict a binary outcome (e.g. lymph-node metastasis) from habitat features. With --cohort (the table "
        "qmri habitat --cohort reads) the habitat model is fitted on the training subjects of every outer fold "
        "only, then every subject's habitat features (fractions, volumes, spatial interaction, connected "
        "components, heterogeneity score, first-order and GLCM texture of every map per habitat) are computed "
        "with it; imputation, standardisation and the feature selection are fitted in the same training fold, "
        "and the classifier's hyper-parameters by an inner cross-validation on it. No test subject shapes what "
        "it is tested with. Writes metrics.json, predictions.csv, roc/calibration/decision_curve.png, "
        "importance.csv, selection.csv, features.csv/.json and model.json (linear classifiers)."))
    g = p.add_argument_group("input")
    g.add_argument("--cohort", type=Path, metavar="CSV", help="cohort table of maps: id,mask,<map>... (habitats "
                   "refitted in every training fold)")
    g.add_argument("--table", type=Path, metavar="CSV", help="a feature table made elsewhere (id or participant_id "
                   "column, numeric columns; units from the JSON beside it), e.g. qmri cohort's cohort.csv")
    g.add_argument("--outcome", metavar="FILE:COLUMN", help="outcome table (CSV with an id column, or BIDS "
                   "participants.tsv) and its binary column (0/1 or two labels)")
    g.add_argument("--positive", metavar="LABEL", help="the positive outcome label (default 1, or the second label "
                                                       "in sorted order)")
    g.add_argument("--site", metavar="COLUMN", help="site column of the outcome table: ComBat harmonisation "
                   "(neuroHarmonize, optional package) fitted on the training folds only")
    g.add_argument("--stability", type=Path, metavar="CSV", help="feature ICC table of qmri habitat --stability "
                                                                 "(for --min-icc)")
    m = p.add_argument_group("saved model")
    m.add_argument("--model", type=Path, metavar="JSON", help="apply a saved model (model.json of a training run) "
                   "to --cohort or --table")
    m.add_argument("--external", metavar="FILE:COLUMN", help="with --model: the new cohort's outcome; evaluates the "
                   "saved model (external validation)")
    m.add_argument("--compare", nargs=2, type=Path, metavar=("A.csv", "B.csv"), help="DeLong's test of the AUCs of "
                   "two predictions.csv on their common subjects (nothing else runs)")
    add_options(p, OPTIONS, title="validation and classifier")
    add_options(p, _clustering_options(), title="clustering (with --cohort; as qmri habitat)")
    o = p.add_argument_group("output")
    o.add_argument("--out-dir", type=Path, help="output folder")
    o.add_argument("--force", action="store_true", help="replace existing outputs")
    o.add_argument("--no-plot", dest="plot", action="store_false", help="no PNG figures")
    o.add_argument("--quiet", action="store_true", help="no progress or summary")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from qmri.workflows.predict import OPTIONS
    from qmri.workflows.predict_files import compare_predictions, predict_from_files

    if args.compare:
        r = compare_predictions(*args.compare)
        print(f"AUC A {r['auc_a']:.3f} ({r['a']}), B {r['auc_b']:.3f} ({r['b']}) on {r['n']} common subjects: "
              f"difference {r['difference']:+.3f} (SE {r['se']:.3f}), z {r['z']:.2f}, p {r['p']:.3g} (DeLong)")
        return 0
    if args.out_dir is None:
        raise QMRIInputError("--out-dir is required (except with --compare)")
    if args.external is not None and args.model is None:
        raise QMRIInputError("--external evaluates a saved model: give --model MODEL.json (to train, use --outcome)")
    if args.external is not None and args.outcome is not None:
        raise QMRIInputError("give --external or --outcome, not both")
    outcome = args.external if args.external is not None else args.outcome

    def say(line):
        if not args.quiet:
            print(f"qmri predict: {line}", flush=True)

    out = predict_from_files(out_dir=args.out_dir, cohort=args.cohort, table=args.table, outcome=outcome,
                             model=args.model, site=args.site, positive=args.positive, stability=args.stability,
                             plot=args.plot, force=args.force, on_start=say, progress=say,
                             habitat=given(args, _clustering_options()), **given(args, OPTIONS))
    if not args.quiet:
        for note in out.notes:
            print(f"qmri predict: note: {note}")
        if out.metrics is not None:
            m = out.metrics["Metrics"]
            lo, hi = m["auc_ci95"]
            yd = m.get("youden", {})
            line = (f"AUC {m['auc']:.3f} (95% CI {lo:.3f}-{hi:.3f}), n {m['n']} ({m['n_positive']} positive); "
                    f"Youden sensitivity {yd.get('sensitivity', float('nan')):.2f}, specificity "
                    f"{yd.get('specificity', float('nan')):.2f}; Brier {m['brier']:.3f}; calibration intercept "
                    f"{m['calibration']['intercept']:.2f}, slope {m['calibration']['slope']:.2f}")
            if "fold_aucs" in m:
                line += f"; fold AUCs {np.nanmean(m['fold_aucs']):.3f} +- {np.nanstd(m['fold_aucs']):.3f}"
            print(line)
        print(f"wrote {len(out.written)} files to {args.out_dir}  (total {out.seconds:.1f} s)")
    return 0
