"""From files to files: :func:`predict_from_files`, the one library call of ``qmri predict``, and
:func:`compare_predictions` (DeLong's test of two models' out-of-fold AUCs).

Training (``outcome`` given, no ``model``): nested cross-validation (:mod:`qmri.workflows.predict`),
then in ``OUT``: ``metrics.json``, ``predictions.csv`` (out-of-fold probability per subject),
``roc.png``, ``calibration.png``, ``decision_curve.png``, ``importance.csv`` (permutation importance,
SHAP with ``shap`` installed, and how many outer folds selected each column), ``selection.csv``
(selection frequency of every column), ``features.csv`` + ``features.json`` (the final model's
feature table and units) and ``model.json`` (the saved model, linear classifiers;
:mod:`qmri.workflows.outcome_model`). Applying (``model`` given): ``predictions.csv``; with an
outcome (external validation) also ``metrics.json`` and the three figures.

Every input is read and checked, and every output path checked against overwriting, before the
cross-validation starts; the outputs are written atomically (all or none).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qmri import __version__, io
from qmri import outcomestats as st
from qmri.errors import QMRIInputError
from qmri.habitats.features import load_subject, read_cohort
from qmri.options import resolve
from qmri.resultset import refuse_existing, write_sets
from qmri.roistats import rows_to_csv
from qmri.workflows import predict as P
from qmri.workflows.outcome_model import OutcomeModel
from qmri.workflows.predict import TableSource, importances, kept_columns, read_feature_table, read_table
from qmri.workflows.predict_figures import calibration_figure, decision_figure, roc_figure

METRICS, PREDICTIONS, MODEL = "metrics.json", "predictions.csv", "model.json"
FIGURES = ("roc.png", "calibration.png", "decision_curve.png")
TRAIN_TABLES = ("importance.csv", "selection.csv", "features.csv", "features.json")
#: Thresholds of the decision curve.
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)


@dataclass
class PredictOutcome:
    """What :func:`predict_from_files` did."""

    metrics: dict | None
    written: list = field(default_factory=list)
    seconds: float = 0.0
    result: object = None
    notes: list = field(default_factory=list)


def _inputs(cohort, table):
    """``(source, ids, notes)`` of a cohort of maps or a feature table."""
    if (cohort is None) == (table is None):
        raise QMRIInputError("give --cohort SUBJECTS.csv (maps, habitats refitted per fold) or --table FEATURES.csv")
    if table is not None:
        t, dropped = read_feature_table(table)
        notes = [f"{table}: non-numeric column(s) left out: {', '.join(dropped)}"] if dropped else []
        return TableSource(t), notes

    _, rows = read_cohort(cohort)
    return [load_subject(sid, m, srcs) for sid, m, srcs in rows], []


def read_stability(path, min_icc: float) -> list[str]:
    """Features of a ``qmri habitat --stability`` table (``feature``, ``icc2_1_ci_low``...) whose ICC(2,1)
    lower 95 % confidence limit is at least ``min_icc``.

    Raises
    ------
    QMRIInputError
        Missing file or columns; no feature passes.
    """
    head, rows = read_table(path, "stability table")
    if "feature" not in head or "icc2_1_ci_low" not in head:
        raise QMRIInputError(f"{path}: needs columns feature and icc2_1_ci_low (qmri habitat --stability writes it)")
    f, c = head.index("feature"), head.index("icc2_1_ci_low")
    keep = []
    for r in rows:
        try:
            if float(r[c]) >= min_icc:
                keep.append(r[f])
        except ValueError:
            continue
    if not keep:
        raise QMRIInputError(f"{path}: no feature has an ICC lower confidence limit >= {min_icc:g}")
    return keep


def planned(out_dir, *, training: bool, evaluate: bool, plot: bool, save: bool) -> list[Path]:
    out = Path(out_dir)
    names = [PREDICTIONS]
    if evaluate:
        names.append(METRICS)
        if plot:
            names += list(FIGURES)
    if training:
        names += list(TRAIN_TABLES) + ([MODEL] if save else [])
    return [out / n for n in names]


def predict_from_files(*, out_dir, cohort=None, table=None, outcome=None, model=None, site=None, positive=None,
                       stability=None, plot: bool = True, force: bool = False, on_start=None, progress=None,
                       habitat=None, **settings) -> PredictOutcome:
    """What ``qmri predict`` does (see the module docstring).

    Parameters
    ----------
    out_dir : path
    cohort : path, optional
        Cohort table of maps (``id,mask,<map>...``, as ``qmri habitat --cohort``).
    table : path, optional
        Feature table (``id`` or ``participant_id`` column, numeric columns; units from the JSON beside).
    outcome : str, optional
        ``FILE:COLUMN`` (CSV with ``id`` or BIDS ``participants.tsv``), binary.
    model : path, optional
        A saved outcome model to apply (then ``outcome`` evaluates it: external validation).
    site : str, optional
        Column of the outcome table naming each subject's site: ComBat inside every training fold.
    positive : str, optional
        The positive outcome label (default: 1, or the second label in sorted order).
    stability : path, optional
        ``qmri habitat --stability`` table; with ``min_icc`` only its stable features are used.
    plot : bool
        Write the ROC, calibration and decision-curve PNGs.
    force : bool
        Replace existing outputs.
    on_start, progress : callable, optional
        Called with one line once the inputs are read / after each repeat.
    habitat : dict, optional
        Clustering settings for a cohort (:data:`qmri.habitats.analysis.OPTIONS`; k fixed, default 3).
    **settings
        :data:`qmri.workflows.predict.OPTIONS`.

    Returns
    -------
    PredictOutcome

    Raises
    ------
    QMRIInputError
        Any bad input, a model whose contract the inputs do not meet; nothing is written.
    OutputExistsError
        An output exists and ``force`` is False.
    """
    t0 = time.perf_counter()
    if model is not None:
        return _apply(out_dir, model, cohort, table, outcome, positive, plot, force, on_start, settings, habitat, t0)
    if outcome is None:
        raise QMRIInputError("give --outcome FILE:COLUMN (training) or --model MODEL.json (prediction)")
    s = resolve(P.OPTIONS, settings, "qmri predict")
    if s["min_icc"] is not None and stability is None:
        raise QMRIInputError("--min-icc needs --stability TABLE.csv (written by qmri habitat --stability)")
    if site is not None:
        P.require_neuroharmonize()
    hab = P.habitat_settings(habitat or {}) if cohort is not None else None
    if table is not None and habitat:
        raise QMRIInputError(f"clustering options ({', '.join(habitat)}) apply to --cohort, not to --table")
    if hab is not None:
        hab.setdefault("seed", s["seed"])
    out = P.read_outcome(outcome, site=site, positive=positive)
    keep_cols = read_stability(stability, s["min_icc"]) if s["min_icc"] is not None else None
    save = s["classifier"] in ("lasso", "logistic") and site is None
    refuse_existing(planned(out_dir, training=True, evaluate=True, plot=plot, save=save), force)
    src, notes = _inputs(cohort, table)
    if cohort is not None:
        subjects = src
        keep_idx, keys, missing = P.match_ids([x.id for x in subjects], out)
        src = P.HabitatSource([subjects[i] for i in keep_idx], hab)
    else:
        keep_idx, keys, missing = P.match_ids(src.ids, out)
        t = src.table
        src = P.TableSource(P.FeatureTable([t.ids[i] for i in keep_idx], t.X[keep_idx], t.names, t.units))
    if missing:
        notes.append(f"{len(missing)} subject(s) without an outcome left out: {', '.join(missing[:8])}"
                     + (" ..." if len(missing) > 8 else ""))
    if len(keep_idx) < 4:
        raise QMRIInputError(f"{out.source}: only {len(keep_idx)} subject(s) have an outcome")
    y = np.array([out.values[k] for k in keys])
    sites = np.array([out.sites[k] for k in keys]) if site is not None else None
    if on_start is not None:
        what = (f"{len(keep_idx)} subjects with maps {', '.join(subjects[0].names)}, habitats refitted per fold "
                f"(k = {hab['k']})" if cohort is not None else f"{len(keep_idx)} subjects, {len(src.table.names)} "
                                                                   "feature columns")
        on_start(f"{what}; outcome {out.source}: {int(y.sum())} positive ({out.labels[1]}), {int((1 - y).sum())} "
                 f"negative ({out.labels[0]}); {s['classifier']}, {s['folds']} folds x {s['repeats']} repeats")
    cv_settings = {k: s[k] for k in ("classifier", "folds", "repeats", "inner_folds", "select", "seed")}
    res = P.cross_validate(src, y, keep=keep_cols, sites=sites, progress=progress, **cv_settings)
    metrics = _train_metrics(res, out, cohort, table, hab, s, keep_cols, stability, site, notes)
    written = _write_training(out_dir, res, metrics, out, hab, s, plot, save, force)
    return PredictOutcome(metrics, written, time.perf_counter() - t0, res, notes)


def _train_metrics(res, out, cohort, table, hab, s, keep_cols, stability, site, notes) -> dict:
    m = res.metrics()
    m["decision_curve"] = st.net_benefit(res.y, res.probability, THRESHOLDS)
    return {"QmriVersion": __version__, "Input": {"cohort": None if cohort is None else str(cohort),
                                                  "table": None if table is None else str(table)},
            "Outcome": {"source": out.source, "negative": out.labels[0], "positive": out.labels[1]},
            "Site": site, "Settings": res.settings, "HabitatSettings": hab,
            "Validation": "nested: habitat model (cohort input), imputation, standardisation and feature selection "
                          "refitted in every outer training fold; hyper-parameters by inner stratified CV on the "
                          "training subjects only",
            "Stability": None if keep_cols is None else {"table": str(stability), "min_icc": s["min_icc"],
                                                          "features_kept": len(keep_cols)},
            "Metrics": m, "Seconds": res.seconds, "Notes": notes,
            "SelectionFrequency": {k: v / len(res.fold_aucs) for k, v in
                                   sorted(res.selection.items(), key=lambda kv: -kv[1])}}


def _write_training(out_dir, res, metrics, out, hab, s, plot, save, force) -> list[Path]:
    o = Path(out_dir)
    writers = {}
    pred = _prediction_rows(res.ids, res.probability, res.y, out.labels, sd=res.oof.std(axis=0))
    writers[o / PREDICTIONS] = lambda p: io.write_text(p, rows_to_csv(pred))
    imp = importances(res, seed=s["seed"])
    metrics["FinalModel"] = {"features": len(res.final_table.names), "used": _used(res),
                             "hyper_parameters": _hyper(res.final)}
    writers[o / METRICS] = lambda p: io.write_json(p, metrics)
    writers[o / "importance.csv"] = lambda p: io.write_text(p, rows_to_csv(imp))
    n_folds = len(res.fold_aucs)
    sel = [{"feature": c, "selected_folds": int(res.selection.get(c, 0)), "folds": n_folds,
            "frequency": res.selection.get(c, 0) / n_folds} for c in res.names]
    sel.sort(key=lambda r: -r["selected_folds"])
    writers[o / "selection.csv"] = lambda p: io.write_text(p, rows_to_csv(sel))
    ft = res.final_table
    rows = [{"id": sid, **{c: float(v) for c, v in zip(ft.names, row)}} for sid, row in zip(ft.ids, ft.X)]
    writers[o / "features.csv"] = lambda p: io.write_text(p, rows_to_csv(rows, digits=12))
    writers[o / "features.json"] = lambda p: io.write_json(p, {
        "Description": "habitat features of every subject under the final model's habitat model"
        if res.habitat_model is not None else "the feature columns the final model reads",
        "Columns": {c: {"Units": u or "1"} for c, u in zip(ft.names, ft.units)}})
    if plot:
        _figure_writers(writers, o, res.y, res.probability, metrics["Metrics"], res.oof)
    if save:
        om = OutcomeModel.from_pipeline(res.final, ft.names, ft.units, classifier=s["classifier"],
                                        habitat_model=res.habitat_model,
                                        info={"Classifier": s["classifier"], "HyperParameters": _hyper(res.final),
                                              "Outcome": metrics["Outcome"], "HabitatSettings": hab,
                                              "YoudenThreshold": metrics["Metrics"]["youden"]["threshold"],
                                              "CrossValidatedAuc": metrics["Metrics"]["auc"],
                                              "CrossValidatedAucCi95": metrics["Metrics"]["auc_ci95"]})
        writers[o / MODEL] = lambda p: io.write_json(p, om.to_dict())
    return write_sets(writers, force=force)


def _used(res) -> list[str]:
    return kept_columns(res.final, res.final_table.names)


def _hyper(pipe) -> dict:
    p = pipe.named_steps["model"].get_params()
    return {k: p[k] for k in ("C", "min_samples_leaf", "learning_rate", "max_depth") if k in p}


def _prediction_rows(ids, prob, y, labels, sd=None) -> list[dict]:
    rows = []
    for i, sid in enumerate(ids):
        row = {"id": sid}
        if y is not None:
            row["outcome"] = int(y[i])
            row["label"] = labels[int(y[i])]
        row["probability"] = float(prob[i])
        if sd is not None:
            row["probability_sd_repeats"] = float(sd[i])
        rows.append(row)
    return rows


def _figure_writers(writers, o: Path, y, p, m, oof=None) -> None:
    writers[o / "roc.png"] = lambda path: roc_figure(path, y, p, m, oof)
    writers[o / "calibration.png"] = lambda path: calibration_figure(path, y, p, m)
    writers[o / "decision_curve.png"] = lambda path: decision_figure(path, y, p, THRESHOLDS)


def _apply(out_dir, model_path, cohort, table, outcome, positive, plot, force, on_start, settings, habitat, t0):
    if settings or habitat:
        given = list(settings) + list(habitat or {})
        raise QMRIInputError(f"--model fixes the model and its habitats; drop "
                             f"{', '.join('--' + k.replace('_', '-') for k in given)}")
    om = OutcomeModel.load(model_path)
    kind = om.contract["Input"]
    if kind == "habitats" and cohort is None:
        raise QMRIInputError(f"{model_path}: a habitat model: give the new subjects' maps with --cohort SUBJECTS.csv")
    if kind == "table" and table is None:
        raise QMRIInputError(f"{model_path}: a feature-table model: give --table FEATURES.csv")
    out = P.read_outcome(outcome, positive=positive) if outcome is not None else None
    refuse_existing(planned(out_dir, training=False, evaluate=out is not None, plot=plot, save=False), force)
    if kind == "habitats":
        hm = om.habitat_model()

        names, _ = read_cohort(cohort)
        if list(names) != list(hm.names):
            raise QMRIInputError(f"{cohort}: maps {', '.join(names)} differ from the model's habitat maps "
                                 f"{', '.join(hm.names)} (names and order must match)")
        subjects, _ = _inputs(cohort, None)
        for x in subjects:
            hm.check(x.names, x.units, f"{cohort}: subject {x.id}")
        ftable = P.HabitatSource(subjects, {}).features(hm)
        om.check_table(ftable.names, ftable.units, str(cohort))
    else:
        src, _ = _inputs(None, table)
        ftable = src.table
        om.check_table(ftable.names, ftable.units, str(table))
    ids = list(ftable.ids)
    prob = om.probability(ftable.columns(om.features))
    if on_start is not None:
        on_start(f"{len(ids)} subject(s); model {model_path} ({om.info.get('Classifier', '?')}, "
                 f"{int((om.coef != 0).sum())} of {len(om.features)} features with a non-zero coefficient)")
    writers, metrics, notes = {}, None, []
    o = Path(out_dir)
    y = None
    if out is not None:
        keep, keys, missing = P.match_ids(ids, out)
        if missing:
            notes.append(f"{len(missing)} subject(s) without an outcome left out of the metrics: "
                         f"{', '.join(missing[:8])}")
        y_all = np.full(len(ids), -1)
        y_all[keep] = [out.values[k] for k in keys]
        yk, pk = y_all[keep], prob[keep]
        if yk.sum() < 2 or (1 - yk).sum() < 2:
            raise QMRIInputError(f"{out.source}: the external cohort needs at least two subjects of each outcome")
        d = st.delong(yk, pk)
        thr = om.info.get("YoudenThreshold")
        at = None
        if isinstance(thr, (int, float)):
            pred = pk >= thr
            at = {"threshold": float(thr), "sensitivity": float(np.mean(pred[yk == 1])),
                  "specificity": float(np.mean(~pred[yk == 0]))}
        metrics = {"QmriVersion": __version__, "Model": str(model_path), "Outcome": {"source": out.source,
                   "negative": out.labels[0], "positive": out.labels[1]},
                   "Validation": "external: the saved model applied as it is (no refitting)",
                   "Metrics": {"auc": d["auc"], "auc_ci95": [d["ci_low"], d["ci_high"]], "auc_se": d["se"],
                               "at_training_threshold": at, "youden": st.youden(yk, pk), "brier": st.brier(yk, pk),
                               "calibration": st.calibration(yk, pk), "n": int(yk.size), "n_positive": int(yk.sum()),
                               "decision_curve": st.net_benefit(yk, pk, THRESHOLDS)},
                   "Notes": notes}
        writers[o / METRICS] = lambda p: io.write_json(p, metrics)
        if plot:
            _figure_writers(writers, o, yk, pk, metrics["Metrics"])
        y = np.where(y_all >= 0, y_all, 0)
        rows = _prediction_rows(ids, prob, y, out.labels)
        for r, v in zip(rows, y_all):
            if v < 0:
                r["outcome"], r["label"] = "", ""
    else:
        rows = _prediction_rows(ids, prob, None, None)
    writers[o / PREDICTIONS] = lambda p: io.write_text(p, rows_to_csv(rows))
    written = write_sets(writers, force=force)
    return PredictOutcome(metrics, written, time.perf_counter() - t0, None, notes)


def read_predictions(path) -> dict:
    """``{id: (outcome, probability)}`` of a ``predictions.csv`` with outcomes.

    Raises
    ------
    QMRIInputError
        Missing file, no ``id``/``outcome``/``probability`` column.
    """
    head, rows = read_table(path, "predictions table")
    for c in ("id", "outcome", "probability"):
        if c not in head:
            raise QMRIInputError(f"{path}: no column {c!r} (a predictions.csv of qmri predict with an outcome)")
    i, o, p = (head.index(c) for c in ("id", "outcome", "probability"))
    return {r[i]: (int(float(r[o])), float(r[p])) for r in rows if r[o] != ""}


def compare_predictions(a, b) -> dict:
    """DeLong's test of the AUCs of two ``predictions.csv`` on their common subjects.

    Raises
    ------
    QMRIInputError
        Fewer than two common subjects of a class, outcomes that differ for a subject.
    """
    pa, pb = read_predictions(a), read_predictions(b)
    common = [k for k in pa if k in pb]
    bad = [k for k in common if pa[k][0] != pb[k][0]]
    if bad:
        raise QMRIInputError(f"{a} and {b}: outcomes differ for {', '.join(bad[:5])}")
    y = np.array([pa[k][0] for k in common])
    if y.sum() < 2 or (1 - y).sum() < 2:
        raise QMRIInputError(f"{a} and {b}: fewer than two common subjects of each outcome")
    r = st.delong_test(y, [pa[k][1] for k in common], [pb[k][1] for k in common])
    r.update(n=len(common), a=str(a), b=str(b), method="DeLong et al. 1988, paired (same subjects)")
    return r
