"""From habitats to an outcome: nested, repeated, stratified cross-validation of an outcome model
whose habitat model, normalisation and feature selection are refitted inside every training fold.

Two inputs. A **cohort** (the table ``qmri habitat --cohort`` reads: ``id,mask,<map>...``): in every
outer training fold the habitat model is fitted on the training subjects' voxels only
(:func:`qmri.habitats.analysis.analyse`), every subject is labelled with it, and each subject's habitat
features (:mod:`qmri.habitats.radiomics`) form the table the classifier sees. A **feature table** made
elsewhere (one row per subject, e.g. ``qmri cohort``'s ``cohort.csv``): its numeric columns as they are.

Inside each outer training fold, one scikit-learn pipeline is fitted: median imputation, optional
ComBat site harmonisation (neuroHarmonize, fitted on the fold's training subjects), standardisation,
removal of constant columns, univariate selection of the ``select`` best columns (ANOVA F), then the
classifier, whose hyper-parameters are chosen by an inner stratified cross-validation (AUC) on the
training subjects only. The outer test subjects never shape what they are tested with. (The inner
folds reuse the outer fold's habitat model: refitting it per inner fold would multiply the cost by
the inner folds, and only the hyper-parameter choice depends on it.)

``order`` shows what a leak does: ``"cluster-first"`` fits the habitat model once on all subjects
(the habitat features of the test subjects then shape the habitats), ``"select-first"`` also selects
the features on all subjects before the split; ``"nested"`` (the default, what ``qmri predict``
does) refits everything per fold.

Evaluation: per subject the out-of-fold probability averaged over the repeats (``predictions.csv``);
on it the AUC with its DeLong 95 % CI, sensitivity and specificity at the Youden threshold, the Brier
score, calibration intercept and slope, the decision curve (:mod:`qmri.outcomestats`); the AUC of
every outer fold and of every repeat. The final model is refitted on every subject (habitat model,
pipeline, hyper-parameters by the inner cross-validation) and saved as data
(:mod:`qmri.workflows.outcome_model`); its permutation importances (and SHAP values where the
``shap`` package is installed) are computed on the subjects it was fitted on.
"""

from __future__ import annotations

import csv
import inspect
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qmri.errors import QMRIInputError
from qmri.habitats.analysis import analyse, resolve_settings
from qmri.options import Option

CLASSIFIERS = ("lasso", "logistic", "svm", "rf", "gbm")
ORDERS = ("nested", "cluster-first", "select-first")
#: Default number of habitats for prediction (k must be fixed: features are named by habitat).
DEFAULT_K = 3

#: Settings shared by Python keywords and ``qmri predict`` flags.
OPTIONS = (
    Option("classifier", "lasso (L1-regularised logistic regression, default), logistic (L2), svm (RBF), rf "
                         "(random forest) or gbm (gradient boosting); hyper-parameters tuned in the inner loop",
           str, "lasso", choices=CLASSIFIERS),
    Option("folds", "outer stratified folds (default 5)", int, 5),
    Option("repeats", "repeats of the outer cross-validation with new splits (default 10)", int, 10),
    Option("inner_folds", "inner stratified folds for the hyper-parameters (default 3)", int, 3),
    Option("select", "columns kept by the univariate (ANOVA F) selection in each training fold (default 20)",
           int, 20),
    Option("min_icc", "keep only features whose ICC(2,1) lower 95%% confidence limit is at least this, from "
                      "--stability (Prior et al. 2024 used 0.5)", float, None),
    Option("seed", "random seed of the splits and classifiers (default 0)", int, 0),
)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def split_spec(spec: str, what: str) -> tuple[Path, str]:
    """``FILE:COLUMN`` → (path, column).

    Raises
    ------
    QMRIInputError
        No ``:COLUMN``.
    """
    text = str(spec)
    if ":" not in text:
        raise QMRIInputError(f"{what} {text}: give FILE:COLUMN (e.g. participants.tsv:outcome)")
    path, column = text.rsplit(":", 1)
    if not column:
        raise QMRIInputError(f"{what} {text}: empty column name after ':'")
    return Path(path), column


def read_table(path, what: str = "table") -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV (or, for ``.tsv``, tab-separated) table.

    Raises
    ------
    QMRIInputError
        Missing, unreadable or empty file; rows of another length than the header.
    """
    path = Path(path)
    if not path.is_file():
        raise QMRIInputError(f"{path}: {what} not found")
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, newline="") as fh:
            rows = [r for r in csv.reader(fh, delimiter=delim) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise QMRIInputError(f"{path}: cannot read {what} ({exc})") from None
    if len(rows) < 2:
        raise QMRIInputError(f"{path}: {what} has no rows under its header")
    head = [c.strip() for c in rows[0]]
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != len(head):
            raise QMRIInputError(f"{path}: line {i} has {len(r)} cells, the header {len(head)}")
    return head, [[c.strip() for c in r] for r in rows[1:]]


def id_column(head, path) -> int:
    """Index of the ``id`` (or BIDS ``participant_id``) column.

    Raises
    ------
    QMRIInputError
        Neither column.
    """
    for name in ("id", "participant_id"):
        if name in head:
            return head.index(name)
    raise QMRIInputError(f"{path}: no id (or participant_id) column; columns: {', '.join(head)}")


@dataclass
class Outcome:
    """A binary outcome per subject id: ``values`` (id → 0/1), ``labels`` (negative, positive label as
    written), ``sites`` (id → site, with ``site``), the source."""

    values: dict
    labels: tuple
    source: str
    sites: dict | None = None


def read_outcome(spec, *, site: str | None = None, positive: str | None = None) -> Outcome:
    """Read ``FILE:COLUMN``: a CSV with an ``id`` column (or a BIDS ``participants.tsv`` with
    ``participant_id``) and a binary column: 0/1, or two labels (the positive one ``positive``, by
    default the second in sorted order; ``n/a`` and empty cells are missing).

    Raises
    ------
    QMRIInputError
        Missing file or column, repeated id, more or fewer than two outcome values, ``positive`` not one
        of them.
    """
    path, column = split_spec(spec, "--outcome")
    head, rows = read_table(path, "outcome table")
    idc = id_column(head, path)
    if column not in head:
        raise QMRIInputError(f"{path}: no column {column!r}; columns: {', '.join(head)}")
    if site is not None and site not in head:
        raise QMRIInputError(f"{path}: no site column {site!r}; columns: {', '.join(head)}")
    col, sc = head.index(column), (head.index(site) if site else None)
    raw, sites = {}, {}
    for r in rows:
        sid = r[idc]
        if sid in raw:
            raise QMRIInputError(f"{path}: id {sid!r} repeated")
        v = r[col]
        if v.lower() in ("", "n/a", "na", "nan"):
            continue
        raw[sid] = v
        if sc is not None:
            sites[sid] = r[sc]
    levels = sorted(set(raw.values()), key=lambda v: (_num(v) is None, _num(v) if _num(v) is not None else 0, v))
    if len(levels) != 2:
        raise QMRIInputError(f"{path}: column {column} must have two values (0/1 or two labels), it has "
                             f"{len(levels)}: {', '.join(levels[:6])}")
    if positive is not None:
        if positive not in levels:
            raise QMRIInputError(f"{path}: --positive {positive!r} is not a value of {column} ({', '.join(levels)})")
        pos = positive
    else:
        pos = levels[1]
    neg = levels[0] if levels[1] == pos else levels[1]
    return Outcome({k: int(v == pos) for k, v in raw.items()}, (neg, pos), f"{path}:{column}",
                   sites if site else None)


def _num(v: str):
    try:
        return float(v)
    except ValueError:
        return None


def match_ids(ids, outcome: Outcome) -> tuple[list[int], list[str], list[str]]:
    """Rows of ``ids`` with an outcome: ``(indices, outcome ids, ids without one)``. An id matches
    itself, or its participant (``sub-01_ses-1`` → ``sub-01``).

    Raises
    ------
    QMRIInputError
        Two rows match the same participant.
    """
    keep, keys, missing, seen = [], [], [], {}
    for i, sid in enumerate(ids):
        key = sid if sid in outcome.values else sid.split("_ses-")[0]
        if key not in outcome.values:
            missing.append(sid)
            continue
        if key in seen:
            raise QMRIInputError(f"{outcome.source}: subjects {seen[key]} and {sid} have the same outcome row "
                                 f"{key}; keep one row (session) per participant")
        seen[key] = sid
        keep.append(i)
        keys.append(key)
    return keep, keys, missing


@dataclass
class FeatureTable:
    """Features per subject: ``X`` (n, F), column ``names`` and ``units``, subject ``ids``."""

    ids: list
    X: np.ndarray
    names: list
    units: list

    def columns(self, names) -> np.ndarray:
        """``X`` with the columns ``names`` (in that order)."""
        index = {n: i for i, n in enumerate(self.names)}
        return self.X[:, [index[n] for n in names]]


def read_units(path) -> dict:
    """Column units from the JSON beside a table (``<stem>.json`` with ``Columns: {name: {Units}}``,
    as ``qmri cohort`` and ``qmri predict`` write); {} without one."""
    side = Path(path).with_suffix(".json")
    try:
        d = json.loads(side.read_text())
        return {k: str(v.get("Units", "")) for k, v in d.get("Columns", {}).items() if isinstance(v, dict)}
    except (OSError, ValueError, AttributeError):
        return {}


def read_feature_table(path) -> tuple[FeatureTable, list[str]]:
    """A feature table: an ``id`` (or ``participant_id``) column and numeric columns (``nan`` allowed);
    columns that are not numeric are left out (returned second). Units from the JSON beside it.

    Raises
    ------
    QMRIInputError
        Missing file, no id column, repeated id, no numeric column.
    """
    head, rows = read_table(path, "feature table")
    idc = id_column(head, path)
    ids = [r[idc] for r in rows]
    if len(set(ids)) != len(ids):
        raise QMRIInputError(f"{path}: an id is repeated")
    units = read_units(path)
    names, cols, dropped = [], [], []
    for j, name in enumerate(head):
        if j == idc:
            continue
        vals = [_num(r[j]) if r[j] else float("nan") for r in rows]
        if any(v is None for v in vals):
            dropped.append(name)
            continue
        names.append(name)
        cols.append(vals)
    if not names:
        raise QMRIInputError(f"{path}: no numeric feature column")
    X = np.array(cols, dtype=np.float64).T
    return FeatureTable(ids, X, names, [units.get(n, "") or "" for n in names]), dropped


# ---------------------------------------------------------------------------------------------
# Feature sources: what a fold's training subjects make of every subject
# ---------------------------------------------------------------------------------------------
class TableSource:
    """Fixed features (a table made elsewhere): the same in every fold."""

    refits = False

    def __init__(self, table: FeatureTable):
        self.table = table
        self.ids = list(table.ids)

    def fold(self, train) -> tuple[FeatureTable, object]:
        return self.table, None


class HabitatSource:
    """Habitat features: the habitat model fitted on the training subjects, every subject labelled
    with it, each one's features (:func:`qmri.habitats.radiomics.subject_features`)."""

    refits = True

    def __init__(self, subjects, settings: dict):
        self.subjects = list(subjects)
        self.ids = [s.id for s in self.subjects]
        self.settings = dict(settings)

    def features(self, model) -> FeatureTable:
        """Every subject's features under a habitat model."""
        return self._table(analyse(self.subjects, model=model, statistics=False).subjects, model.k)

    def _table(self, results, k) -> FeatureTable:
        from qmri.habitats.radiomics import subject_features

        rows, units = [], None
        for r in results:
            v, u = subject_features(r.labels, r.subject, k)
            rows.append(v)
            units = units or u
        names = list(rows[0])
        X = np.array([[row[n] for n in names] for row in rows])
        return FeatureTable([r.subject.id for r in results], X, names, [units[n] for n in names])

    def fold(self, train) -> tuple[FeatureTable, object]:
        train = list(train)
        fitted = analyse([self.subjects[i] for i in train], statistics=False, **self.settings)
        rest = [i for i in range(len(self.subjects)) if i not in set(train)]
        results = dict(zip(train, fitted.subjects))
        if rest:
            results.update(zip(rest, analyse([self.subjects[i] for i in rest], model=fitted.model,
                                             statistics=False).subjects))
        return self._table([results[i] for i in range(len(self.subjects))], fitted.model.k), fitted.model


def habitat_settings(settings: dict) -> dict:
    """Clustering settings for prediction: those of ``qmri habitat``, k fixed (default
    :data:`DEFAULT_K`).

    Raises
    ------
    QMRIInputError
        ``k`` auto, bad settings.
    """
    s = dict(settings)
    s.setdefault("k", DEFAULT_K)
    resolved = resolve_settings(s)
    if resolved["k"] == "auto":
        raise QMRIInputError("--k auto: the features are named by habitat, so k must be fixed for prediction "
                             f"(default {DEFAULT_K}); choose it with qmri habitat --k auto first")
    return s


# ---------------------------------------------------------------------------------------------
# The pipeline fitted in a training fold
# ---------------------------------------------------------------------------------------------
def _logistic(l1: bool, seed: int):
    from sklearn.linear_model import LogisticRegression

    if inspect.signature(LogisticRegression).parameters["penalty"].default == "deprecated":
        return LogisticRegression(l1_ratio=1.0 if l1 else 0.0, solver="liblinear", max_iter=1000, random_state=seed)
    return LogisticRegression(penalty="l1" if l1 else "l2", solver="liblinear", max_iter=1000, random_state=seed)


def classifier(name: str, seed: int):
    """``(estimator, hyper-parameter grid)`` of ``name`` (:data:`CLASSIFIERS`)."""
    if name in ("lasso", "logistic"):
        return _logistic(name == "lasso", seed), {"model__C": [0.03, 0.1, 0.3, 1.0, 10.0]}
    if name == "svm":
        from sklearn.svm import SVC

        return SVC(kernel="rbf", probability=True, random_state=seed), {"model__C": [0.3, 1.0, 3.0]}
    if name == "rf":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=200, random_state=seed), {"model__min_samples_leaf": [1, 3, 5]}
    if name == "gbm":
        from sklearn.ensemble import GradientBoostingClassifier

        return GradientBoostingClassifier(n_estimators=100, random_state=seed), {
            "model__learning_rate": [0.05, 0.1], "model__max_depth": [1, 2]}
    raise QMRIInputError(f"--classifier must be one of {', '.join(CLASSIFIERS)}, got {name!r}")


class ComBat:
    """ComBat site harmonisation (neuroHarmonize: Pomponio et al., NeuroImage 2020;208:116450, after
    Johnson et al. 2007 and Fortin et al. 2017) as a scikit-learn step: the last column of X is the
    site code; it is removed and the other columns harmonised with the model fitted on the rows given
    to :meth:`fit` (a fold's training subjects)."""

    def __init__(self):
        pass

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self

    def fit(self, X, y=None):
        import pandas as pd
        from neuroHarmonize import harmonizationLearn

        data, site = X[:, :-1], X[:, -1]
        self.sd_ = np.where(np.nanstd(data, axis=0) > 0, 1.0, 0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model_, _ = harmonizationLearn(self._cols(data), pd.DataFrame({"SITE": site.astype(int)}))
        return self

    def _cols(self, data):
        # a constant column (zero variance) breaks ComBat's standardisation: it is replaced by a ramp
        # for the fit and left as it was by transform
        return np.where(self.sd_[None, :] > 0, data, 0.0) + (self.sd_[None, :] == 0) * np.arange(len(data))[:, None]

    def transform(self, X):
        import pandas as pd
        from neuroHarmonize import harmonizationApply

        data, site = X[:, :-1], X[:, -1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = harmonizationApply(self._cols(data), pd.DataFrame({"SITE": site.astype(int)}), self.model_)
        return np.where(self.sd_[None, :] > 0, out, data)

    def fit_transform(self, X, y=None):
        return self.fit(X, y).transform(X)


def require_neuroharmonize() -> None:
    """Raises QMRIInputError when neuroHarmonize (and pandas) are not installed."""
    try:
        import neuroHarmonize  # noqa: F401
        import pandas  # noqa: F401
    except ImportError:
        raise QMRIInputError("--site needs the optional package neuroHarmonize (ComBat): "
                             "pip install neuroHarmonize") from None


def make_pipeline(name: str, n_select: int, n_features: int, seed: int, *, site: bool = False):
    """The pipeline of one training fold and its hyper-parameter grid (see the module docstring)."""
    from sklearn.feature_selection import SelectKBest, VarianceThreshold, f_classif
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    est, grid = classifier(name, seed)
    steps = [("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
    if site:  # the site code is X's last column; ComBat removes it
        steps.append(("harmonise", ComBat()))
    steps += [("scale", StandardScaler()), ("variance", VarianceThreshold(1e-12)),
              ("select", SelectKBest(f_classif, k="all" if n_select >= n_features else n_select)),
              ("model", est)]
    return Pipeline(steps), grid


def tuned(pipe, grid, inner_folds: int, seed: int):
    """The pipeline with its grid searched by inner stratified cross-validation (AUC)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    return GridSearchCV(pipe, grid, cv=StratifiedKFold(inner_folds, shuffle=True, random_state=seed),
                        scoring="roc_auc", n_jobs=1, error_score=np.nan)


def kept_columns(pipe, names) -> list[str]:
    """The columns a fitted pipeline uses: after the variance filter and the selection, and for
    linear classifiers those with a non-zero coefficient."""
    names = np.asarray(names)
    names = names[pipe.named_steps["variance"].get_support()]
    names = names[pipe.named_steps["select"].get_support()]
    model = pipe.named_steps["model"]
    if hasattr(model, "coef_"):
        names = names[np.abs(model.coef_[0]) > 0]
    return list(names)


# ---------------------------------------------------------------------------------------------
# Cross-validation
# ---------------------------------------------------------------------------------------------
@dataclass
class PredictResult:
    """What :func:`cross_validate` returns."""

    ids: list
    y: np.ndarray
    oof: np.ndarray                      # (repeats, n) out-of-fold probabilities
    fold_aucs: list
    selection: dict                      # column -> number of outer folds that kept it
    n_fits: int
    settings: dict
    names: list = field(default_factory=list)
    units: list = field(default_factory=list)
    seconds: float = 0.0
    final: object = None                 # the final pipeline (GridSearchCV best estimator)
    final_table: FeatureTable | None = None
    habitat_model: object = None

    @property
    def probability(self) -> np.ndarray:
        """Out-of-fold probability per subject, averaged over the repeats."""
        return self.oof.mean(axis=0)

    def metrics(self) -> dict:
        from qmri import outcomestats as st

        p, y = self.probability, self.y
        d = st.delong(y, p)
        rep = [st.auc(y, r) for r in self.oof]
        return {"auc": d["auc"], "auc_ci95": [d["ci_low"], d["ci_high"]], "auc_se": d["se"],
                "auc_method": "AUC of the out-of-fold probability averaged over the repeats; 95% CI by DeLong's "
                              "method on the logit scale",
                "auc_per_repeat": rep, "auc_repeats_mean": float(np.mean(rep)), "auc_repeats_sd": float(np.std(rep)),
                "fold_aucs": self.fold_aucs, "youden": st.youden(y, p), "brier": st.brier(y, p),
                "calibration": st.calibration(y, p), "n": int(y.size), "n_positive": int(y.sum()),
                "n_negative": int((1 - y).sum())}


def _check_design(y, folds: int, inner: int, repeats: int) -> None:
    if folds < 2 or inner < 2 or repeats < 1:
        raise QMRIInputError(f"--folds and --inner-folds must be >= 2 and --repeats >= 1, got {folds}, {inner}, "
                             f"{repeats}")
    small = int(min(y.sum(), (1 - y).sum()))
    if small < folds:
        raise QMRIInputError(f"the smaller outcome class has {small} subjects, fewer than --folds {folds}")
    if small * (folds - 1) // folds < inner:
        raise QMRIInputError(f"the smaller outcome class has {small} subjects: too few for {folds} outer and "
                             f"{inner} inner folds (lower --folds or --inner-folds)")


def cross_validate(source, y, *, classifier: str = "lasso", folds: int = 5, repeats: int = 10, inner_folds: int = 3,
                   select: int = 20, seed: int = 0, order: str = "nested", keep=None, sites=None,
                   final: bool = True, progress=None) -> PredictResult:
    """Nested, repeated, stratified cross-validation of an outcome model.

    Parameters
    ----------
    source : TableSource or HabitatSource
        The subjects' features (a habitat source refits its habitat model per training fold).
    y : ndarray of int (n,)
        0/1 outcome, in the source's subject order.
    classifier, folds, repeats, inner_folds, select, seed
        See :data:`OPTIONS`.
    order : {"nested", "cluster-first", "select-first"}
        ``nested`` (default): everything refitted per training fold. The other two leak on purpose
        (see the module docstring); they exist to measure the leak.
    keep : list of str, optional
        Columns allowed (e.g. the stable features); None: all.
    sites : ndarray (n,), optional
        Site code per subject: ComBat harmonisation inside every training fold (neuroHarmonize).
    final : bool
        Also fit the final model on every subject.
    progress : callable, optional
        Called with a line after each repeat.

    Returns
    -------
    PredictResult

    Raises
    ------
    QMRIInputError
        Too few subjects of a class for the folds; bad settings; no column left.
    """
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    y = np.asarray(y, dtype=int)
    if order not in ORDERS:
        raise QMRIInputError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if select < 1:
        raise QMRIInputError(f"--select must be >= 1, got {select}")
    _check_design(y, folds, inner_folds, repeats)
    if sites is not None:
        require_neuroharmonize()
        sites = np.unique(np.asarray(sites), return_inverse=True)[1].astype(np.float64)
    n = y.size
    oof = np.full((repeats, n), np.nan)
    fold_aucs, selection, n_fits = [], {}, 0
    fixed, fixed_model = (None, None)
    if order != "nested" or not source.refits:
        fixed, fixed_model = source.fold(range(n))
    names_all = None

    def columns(table):
        names = [c for c in table.names if keep is None or c in keep]
        if not names:
            raise QMRIInputError("no feature column left (--min-icc keeps none)")
        return names, table.columns(names)

    pre_selected = None
    if order == "select-first":
        from sklearn.feature_selection import SelectKBest, f_classif
        from sklearn.impute import SimpleImputer

        names, X = columns(fixed)
        Xi = SimpleImputer(strategy="median", keep_empty_features=True).fit_transform(X)
        ok = np.nanstd(Xi, axis=0) > 0
        sel = SelectKBest(f_classif, k=min(select, int(ok.sum()))).fit(Xi[:, ok], y)
        pre_selected = list(np.asarray(names)[ok][sel.get_support()])

    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in range(repeats):
            split = StratifiedKFold(folds, shuffle=True, random_state=seed + r)
            for f, (train, test) in enumerate(split.split(np.zeros(n), y)):
                table = fixed if fixed is not None else source.fold(train)[0]
                names, X = columns(table)
                if pre_selected is not None:
                    names, X = pre_selected, table.columns(pre_selected)
                names_all = names
                if sites is not None:
                    X = np.column_stack([X, sites])
                pipe, grid = make_pipeline(classifier, select, len(names), seed, site=sites is not None)
                search = tuned(pipe, grid, inner_folds, seed + 1000 * r + f)
                search.fit(X[train], y[train])
                n_fits += 1
                p = search.predict_proba(X[test])[:, 1]
                oof[r, test] = p
                from qmri.outcomestats import auc

                fold_aucs.append(auc(y[test], p))
                for c in kept_columns(search.best_estimator_, names):
                    selection[c] = selection.get(c, 0) + 1
            if progress is not None:
                from qmri.outcomestats import auc

                progress(f"repeat {r + 1}/{repeats}: AUC {auc(y, oof[r]):.3f} ({time.perf_counter() - t0:.1f} s)")
        res = PredictResult(list(source.ids), y, oof, fold_aucs, selection, n_fits,
                            {"classifier": classifier, "folds": folds, "repeats": repeats, "inner_folds": inner_folds,
                             "select": select, "seed": seed, "order": order}, names=names_all or [])
        if final:
            table, model = (fixed, fixed_model) if fixed is not None else source.fold(range(n))
            names, X = columns(table)
            if pre_selected is not None:
                names, X = pre_selected, table.columns(pre_selected)
            if sites is not None:
                X = np.column_stack([X, sites])
            pipe, grid = make_pipeline(classifier, select, len(names), seed, site=sites is not None)
            search = tuned(pipe, grid, inner_folds, seed)
            search.fit(X, y)
            res.final = search.best_estimator_
            res.final_table = FeatureTable(table.ids, table.columns(names), names,
                                           [table.units[table.names.index(c)] for c in names])
            res.habitat_model = model
            res.names, res.units = names, res.final_table.units
    res.seconds = time.perf_counter() - t0
    return res


def importances(res: PredictResult, *, seed: int = 0, n_repeats: int = 10) -> list[dict]:
    """Permutation importance of the final model's columns on the subjects it was fitted on: the mean
    (and SD) over ``n_repeats`` permutations of the drop in AUC when one column is permuted (Breiman,
    Mach Learn 2001;45:5; scikit-learn's definition). A column the fitted pipeline does not use
    (dropped by the selection, or a zero coefficient) has importance 0 exactly and is not permuted.
    Also the mean |SHAP| value where the ``shap`` package is installed. Sorted by importance."""
    from qmri.outcomestats import auc

    X, y = res.final_table.X, res.y
    used = set(kept_columns(res.final, res.final_table.names))
    rng = np.random.default_rng(seed)
    base = auc(y, res.final.predict_proba(X)[:, 1])
    shap_values = _shap(res.final, X, [j for j, c in enumerate(res.final_table.names) if c in used])
    rows = []
    for j, name in enumerate(res.final_table.names):
        drops = np.zeros(n_repeats)
        if name in used:
            for r in range(n_repeats):
                Xp = X.copy()
                Xp[:, j] = X[rng.permutation(len(X)), j]
                drops[r] = base - auc(y, res.final.predict_proba(Xp)[:, 1])
        row = {"feature": name, "unit": res.final_table.units[j] or "1",
               "permutation_auc_drop": float(drops.mean()), "permutation_sd": float(drops.std()),
               "used_by_final_model": name in used,
               "selected_folds": int(res.selection.get(name, 0)), "folds": len(res.fold_aucs)}
        if shap_values is not None:
            row["mean_abs_shap"] = float(shap_values[j])
        rows.append(row)
    return sorted(rows, key=lambda r: (-r["permutation_auc_drop"], -r["selected_folds"]))


def _shap(model, X, columns):
    """Mean |SHAP| value per column (SHAP's model-agnostic explainer on the probability, the subjects
    as background), or None without the ``shap`` package. Only ``columns`` (those the model uses)
    are explained: the others are held at their medians, which changes nothing since the fitted
    pipeline ignores them; their value is 0."""
    try:
        import shap
    except ImportError:
        return None
    out = np.zeros(X.shape[1])
    if not columns:
        return out
    base = np.nanmedian(X, axis=0)

    def f(z):
        full = np.tile(base, (len(z), 1))
        full[:, columns] = z
        return model.predict_proba(full)[:, 1]

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = shap.Explainer(f, X[:, columns])(X[:, columns]).values
        out[columns] = np.abs(values).mean(axis=0)
        return out
    except Exception:  # noqa: BLE001 - SHAP is an extra; its failure must not lose the run
        return None
