"""The steps of a cohort, read from a TOML file (``steps.toml``) and checked before anything runs.

Format (every table optional but at least one ``[fit.<name>]``; ``qmri cohort --example-config``
prints a commented example)::

    [fit.<name>]                  # a fit step; <name> names its maps in the cohort table (ivim_D_mean)
    model = "ivim"                # a qmri fitting command (as in `qmri --help`: ivim, dce, ...)
    method = "segmented"          # optional: one of the model's methods (default the model's)
    series = { suffix = "dwi", acq = "ivim" }                # BIDS entities of the series to fit
    mask = { dataset = "derivatives/masks", suffix = "mask", label = "tumour" }   # optional; or "auto"
    bounds = { D = [0.0, 0.005] }                            # optional, units of the outputs
    [fit.<name>.options]          # the command's options, named as its Python keywords
    compute_se = true             # (qmri <model> --help: --se is compute_se, --aif-delay aif_delay)

    [roi]                         # where the ROI masks are (needed by the group level)
    mask = { dataset = "derivatives/masks", suffix = "mask", label = "tumour" }
    statistics = ["mean", "median", "q1", "q3"]              # optional (default: all of qmri stats')

    [habitat]                     # the population habitat model (group level); optional
    maps = ["ivim.D", "ivim.f", "dce.Ktrans"]   # <fit step>.<map>; or a table {name = "step.map"}
    k = 3                         # and any other setting of qmri habitat (method, spatial, beta...)
    # model = "model.json"        # or: label with a saved cohort model instead of fitting one

    [predict]                     # an outcome model from the habitats (group level); optional, needs [habitat]
    outcome = "outcome"           # a binary column of the dataset's participants.tsv
    classifier = "lasso"          # and any other setting of qmri predict (folds, repeats, select, seed...)

A selector (``series``, ``mask``, or an option given as a table, e.g. ``t1 = {suffix = "T1map"}``)
is BIDS entities (short names: ``acq``, ``run``, ``desc``, ``label``...), ``suffix``, ``datatype``
and ``extension`` (default: images), plus ``dataset``: a derivatives folder, relative to the BIDS
dataset or absolute (default: the raw dataset). Subject and session come from the participant.
Option values are checked as the command line checks them (:class:`qmri.options.Option`), before
anything runs; those that are file paths (``bval = "x.bval"``, ``aif = "aif.csv"``, ``aif = "roi:artery.nii.gz"``,
``weights = "nets.pt"``) are relative to the configuration file's folder.

Every error is one line naming the file, the table and the key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from qmri import io
from qmri.bids import schema_entities
from qmri.cohort.dataset import SPECIAL_KEYS, Selector
from qmri.errors import QMRIInputError
from qmri.habitats.analysis import OPTIONS as HABITAT_OPTIONS
from qmri.habitats.analysis import resolve_settings
from qmri.masking import is_auto
from qmri.models import MODULES
from qmri.models import command as model_command
from qmri.models.base import bound_pair
from qmri.options import resolve
from qmri.roistats import STATISTICS
from qmri.workflows import workflow
from qmri.workflows.job import split_options

FIT_KEYS = ("model", "method", "series", "mask", "bounds", "options")
ROI_KEYS = ("mask", "statistics")
HABITAT_KEYS = ("maps", "model")
PREDICT_KEYS = ("outcome", "positive")


@dataclass(frozen=True)
class FitStep:
    """One ``[fit.<name>]`` step: a model fitted to one series of every participant.

    Attributes
    ----------
    name : str
    command : str
        The qmri fitting command (``qmri.models.MODULES``).
    series : Selector
    mask : Selector, "auto" or None
        The fit mask: a file per participant, or an automatic mask (``--mask auto``).
    method : str or None
    options : dict
        The command's options by Python keyword; a value may be a :class:`Selector` (a file per
        participant).
    bounds : dict or None
        ``{parameter: (lower, upper)}``.
    """

    name: str
    command: str
    series: Selector
    mask: Selector | str | None = None
    method: str | None = None
    options: dict = field(default_factory=dict)
    bounds: dict | None = None

    def model_cls(self):
        return model_command(self.command)

    def record(self) -> dict:
        """JSON-ready description (part of the configuration hash)."""
        return {"name": self.name, "model": self.command, "method": self.method,
                "series": self.series.as_dict(), "mask": self.mask if self.mask is None or is_auto(self.mask) else self.mask.as_dict(),
                "bounds": self.bounds, "options": {k: v.as_dict() if isinstance(v, Selector) else v
                                                   for k, v in sorted(self.options.items())}}


@dataclass(frozen=True)
class RoiSpec:
    """``[roi]``: the ROI mask per participant and the statistics of the cohort table."""

    mask: Selector
    statistics: tuple

    def record(self) -> dict:
        return {"mask": self.mask.as_dict(), "statistics": list(self.statistics)}


@dataclass(frozen=True)
class HabitatStep:
    """``[habitat]``: features ``{feature name: (fit step, map)}``, clustering settings, or a saved model."""

    features: dict
    settings: dict = field(default_factory=dict)
    model: Path | None = None

    def record(self) -> dict:
        return {"features": {k: list(v) for k, v in self.features.items()}, "settings": self.settings,
                "model": None if self.model is None else str(self.model)}


@dataclass(frozen=True)
class PredictStep:
    """``[predict]``: the outcome column of ``participants.tsv``, its positive label, the settings of
    :data:`qmri.workflows.predict.OPTIONS`."""

    outcome: str
    positive: str | None = None
    settings: dict = field(default_factory=dict)

    def record(self) -> dict:
        return {"outcome": self.outcome, "positive": self.positive, "settings": self.settings}


@dataclass
class CohortConfig:
    """A checked configuration (:func:`load_config`)."""

    path: Path
    fits: dict
    roi: RoiSpec | None = None
    habitat: HabitatStep | None = None
    predict: PredictStep | None = None


def digest(record) -> str:
    """SHA-256 of a JSON-ready record (keys sorted): the configuration hash of a task."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def load_config(path) -> CohortConfig:
    """Read and check ``steps.toml``.

    Raises
    ------
    QMRIInputError
        Missing or unreadable file, invalid TOML, an unknown table or key, an unknown model, method,
        option, entity or habitat setting, a bad value (one line naming the file, table and key).
    """
    import tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise QMRIInputError(f"{path}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise QMRIInputError(f"{path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise QMRIInputError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise QMRIInputError(f"{path}: configuration nested deeper than {io.MAX_NESTING} levels") from None
    io.check_nesting(data, path, "configuration")
    _known(data, ("fit", "roi", "habitat", "predict"), f"{path}: top level")
    fits_table = _table(data.get("fit", {}), f"{path}: [fit]")
    if not fits_table:
        raise QMRIInputError(f"{path}: no fit step; add a table [fit.<name>] (see qmri cohort --example-config)")
    fits = {}
    for name, table in fits_table.items():
        if not name.replace("_", "").isalnum():
            raise QMRIInputError(f"{path}: [fit.{name}]: a step name is letters, digits and _ (it names columns)")
        fits[name] = _fit_step(path, name, _table(table, f"{path}: [fit.{name}]"))
    roi = _roi(path, _table(data["roi"], f"{path}: [roi]")) if "roi" in data else None
    habitat = _habitat(path, _table(data["habitat"], f"{path}: [habitat]"), fits) if "habitat" in data else None
    if habitat is not None and roi is None:
        raise QMRIInputError(f"{path}: [habitat] needs [roi] (the masks the habitats are drawn in)")
    predict = _predict(path, _table(data["predict"], f"{path}: [predict]"), habitat) if "predict" in data else None
    return CohortConfig(path, fits, roi, habitat, predict)


def _table(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise QMRIInputError(f"{where}: expected a table, got {value!r}")
    return value


def _known(table: dict, keys, where: str) -> None:
    unknown = [k for k in table if k not in keys]
    if unknown:
        raise QMRIInputError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(keys)})")


def selector(value, where: str) -> Selector:
    """A selector from its TOML table.

    Raises
    ------
    QMRIInputError
        Not a table, an unknown entity, ``sub``/``ses`` given, a value that is not text or a list of text.
    """
    if not isinstance(value, dict) or not value:
        raise QMRIInputError(f"{where}: expected a table of BIDS entities, e.g. {{ suffix = \"dwi\", acq = \"ivim\" }}")
    entities, _ = schema_entities()
    criteria, dataset = [], None
    for key, v in value.items():
        if key == "dataset":
            if not isinstance(v, str) or not v:
                raise QMRIInputError(f"{where}: dataset must be a folder path, got {v!r}")
            dataset = v
            continue
        if key in ("sub", "ses", "subject", "session"):
            raise QMRIInputError(f"{where}: {key} is set by each participant; select by the other entities")
        if key not in entities and key not in SPECIAL_KEYS:
            raise QMRIInputError(f"{where}: unknown BIDS entity {key!r} (entities are short names: acq, run, desc, "
                                 f"label...; also {', '.join(SPECIAL_KEYS)}, dataset)")
        values = v if isinstance(v, list) else [v]
        if not values or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in values):
            raise QMRIInputError(f"{where}: {key} must be text or a list of text, got {v!r}")
        criteria.append((key, tuple(str(x) for x in values)))
    if not criteria:
        raise QMRIInputError(f"{where}: a selector needs at least one entity or the suffix")
    return Selector(tuple(sorted(criteria)), dataset, where)


def _fit_step(path: Path, name: str, table: dict) -> FitStep:
    where = f"{path}: [fit.{name}]"
    _known(table, FIT_KEYS, where)
    command = table.get("model")
    if not isinstance(command, str) or command not in MODULES:
        raise QMRIInputError(f"{where}: model must be one of {', '.join(MODULES)}, got {command!r}")
    if "series" not in table:
        raise QMRIInputError(f"{where}: series missing (the BIDS entities of the series to fit, e.g. "
                             "series = { suffix = \"dwi\" })")
    series = selector(table["series"], f"{where} series")
    mask = table.get("mask")
    if mask is not None and not is_auto(mask):
        mask = selector(mask, f"{where} mask")

    cls = model_command(command)
    method = table.get("method")
    if method is not None and (not isinstance(method, str) or method not in cls.methods):
        raise QMRIInputError(f"{where}: method must be one of {', '.join(cls.methods)}, got {method!r}")
    options = dict(_table(table.get("options", {}), f"{where}.options"))
    inputs, model_opts, method_opts = split_options(cls, options, f"{path}: [fit.{name}.options]")
    inputs_declared = workflow(cls.workflow).inputs(cls) + tuple(cls.options)
    declared = {o.name: o for o in inputs_declared}
    in_options = f"{path}: [fit.{name}.options]"
    try:  # the method's options by the rule of every fit (Model.method_options)
        chosen, resolved = cls.method_options(method, method_opts, where=lambda key: f"{in_options} {key}")
    except QMRIInputError as exc:  # an option the method does not use: named with the file
        raise QMRIInputError(str(exc) if str(exc).startswith(in_options) else f"{in_options} {exc}") from None
    declared.update({o.name: o for o in chosen.options})
    checked = {}
    for key, value in options.items():
        opt_where = f"{path}: [fit.{name}.options] {key}"
        if isinstance(value, dict):
            checked[key] = selector(value, opt_where)
            continue
        # the value checked as the command line checks it; file paths relative to this file's folder
        value = resolved[key] if key in method_opts else declared[key].convert(value, opt_where)
        checked[key] = declared[key].relative_to(value, path.parent)
    for o in inputs_declared:
        if o.required and not any(g.name in options for g in inputs_declared if g is o or (o.group and g.group == o.group)):
            raise QMRIInputError(f"{path}: [fit.{name}.options]: {o.name} missing (qmri {command} requires {o.cli_flag})")
    bounds = None
    if "bounds" in table:
        bounds = {}
        for k, v in _table(table["bounds"], f"{where} bounds").items():
            if k not in cls.parameter_names():
                raise QMRIInputError(f"{where} bounds: {k!r} is not a parameter of {command} "
                                     f"({', '.join(cls.parameter_names())})")
            try:
                bounds[k] = bound_pair(k, v)
            except QMRIInputError as exc:
                raise QMRIInputError(f"{where} bounds: {exc}") from None
        try:
            cls.check_bounds_apply(chosen, list(bounds))
        except QMRIInputError as exc:
            raise QMRIInputError(f"{where} bounds: {exc}") from None
    return FitStep(name, command, series, mask, method, checked, bounds)


def _roi(path: Path, table: dict) -> RoiSpec:
    where = f"{path}: [roi]"
    _known(table, ROI_KEYS, where)
    if "mask" not in table:
        raise QMRIInputError(f"{where}: mask missing (e.g. mask = {{ dataset = \"derivatives/masks\", "
                             "suffix = \"mask\" }})")
    stats = table.get("statistics", list(STATISTICS))
    if not isinstance(stats, list) or not stats or any(s not in STATISTICS for s in stats):
        raise QMRIInputError(f"{where} statistics: a list of {', '.join(STATISTICS)}, got {stats!r}")
    return RoiSpec(selector(table["mask"], f"{where} mask"), tuple(dict.fromkeys(stats)))


def _habitat(path: Path, table: dict, fits: dict) -> HabitatStep:
    where = f"{path}: [habitat]"
    _known(table, HABITAT_KEYS + tuple(o.name for o in HABITAT_OPTIONS), where)
    maps = table.get("maps")
    if isinstance(maps, list):
        pairs = [(str(m).split(".", 1)[-1], m) for m in maps]
    elif isinstance(maps, dict):
        pairs = list(maps.items())
    else:
        raise QMRIInputError(f"{where} maps: a list of \"<fit step>.<map>\" (e.g. [\"ivim.D\", \"dce.Ktrans\"]) or a "
                             f"table {{ name = \"step.map\" }}, got {maps!r}")
    features = {}
    for feature, ref in pairs:
        step, dot, map_name = str(ref).partition(".")
        if not dot or not map_name:
            raise QMRIInputError(f"{where} maps: {ref!r} is not <fit step>.<map> (e.g. ivim.D)")
        if step not in fits:
            raise QMRIInputError(f"{where} maps: {ref!r} names no fit step (steps: {', '.join(fits)})")
        if feature in features:
            raise QMRIInputError(f"{where} maps: feature {feature!r} twice; name them: maps = {{ D_ivim = \"{ref}\" }}")
        features[feature] = (step, map_name)
    if not features:
        raise QMRIInputError(f"{where} maps: no map")
    settings = {k: v for k, v in table.items() if k not in HABITAT_KEYS}
    model = None
    if "model" in table:
        if settings:
            raise QMRIInputError(f"{where}: model (a saved habitat model) fixes the settings; drop "
                                 f"{', '.join(settings)}")
        model = (path.parent / Path(str(table["model"])).expanduser()).resolve()
        if not model.is_file():
            raise QMRIInputError(f"{where} model: {model} not found")
    else:
        by_name = {o.name: o for o in HABITAT_OPTIONS}
        for key, value in settings.items():  # each value as the command line checks it, named by its key
            by_name[key].convert(value, f"{where} {key}")
        try:
            resolve_settings(settings)
        except QMRIInputError as exc:
            raise QMRIInputError(f"{where}: {exc}") from None
    return HabitatStep(features, settings, model)


def _predict(path: Path, table: dict, habitat: HabitatStep | None) -> PredictStep:
    from qmri.workflows.predict import OPTIONS as PREDICT_OPTIONS
    from qmri.workflows.predict import habitat_settings

    where = f"{path}: [predict]"
    names = tuple(o.name for o in PREDICT_OPTIONS if o.name != "min_icc")
    _known(table, PREDICT_KEYS + names, where)
    if habitat is None:
        raise QMRIInputError(f"{where}: needs [habitat] (its maps and settings; the habitat model is refitted in "
                             "every training fold)")
    if habitat.model is not None:
        raise QMRIInputError(f"{where}: the habitat model is refitted in every training fold; give [habitat] "
                             "settings instead of a saved model")
    if not isinstance(table.get("outcome"), str) or not table["outcome"]:
        raise QMRIInputError(f"{where} outcome: the name of a binary column of participants.tsv, e.g. "
                             "outcome = \"lnm\"")
    settings = {k: v for k, v in table.items() if k not in PREDICT_KEYS}
    try:
        resolve(PREDICT_OPTIONS, settings, "[predict]")
        habitat_settings(habitat.settings)
    except QMRIInputError as exc:
        raise QMRIInputError(f"{where}: {exc}") from None
    positive = table.get("positive")
    return PredictStep(table["outcome"], None if positive is None else str(positive), settings)
