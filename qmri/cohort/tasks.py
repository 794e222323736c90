"""The tasks of a cohort run, each a picklable object that a Dask worker (or any process) runs with
:func:`execute`.

* :class:`FitTask` (participant level): one fit step of one participant, written as a BIDS derivative
  (:func:`qmri.workflows.job.plan_fit`, :func:`~qmri.workflows.job.run_fit`); every map's sidecar
  records the step (``CohortStep``) and the task's configuration hash (``CohortConfigSha256``), in the
  same atomic result set as the maps. Outputs that exist with the same hash are skipped; outputs of
  another configuration are refused unless the task is forced.
* :class:`StatsTask` (group level): the ROI statistics of every parameter map of one participant
  (maps resampled onto the ROI's grid, :func:`qmri.habitats.features.map_on_grid`), and the map files
  its habitat features come from.
* :class:`HabitatTask` (group level): the population habitat model over every participant
  (:func:`qmri.habitats.files.habitats_from_files` on a cohort table it writes), and each one's
  habitat columns of the cohort table.

:func:`execute` sizes the compute libraries' threads, captures the ``qmri`` log records of the task,
turns any exception into a failed :class:`TaskResult` (one line; the traceback goes to the log) and
writes the task's log to ``OUT_DIR/logs/<participant>_step-<step>.log`` (atomically, so a killed task
leaves none; a skipped task leaves the log of the run that made its outputs).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qmri import __version__, io
from qmri.cohort.dataset import Participant
from qmri.errors import QMRIInputError
from qmri.habitats.features import MapSource, load_roi, map_on_grid
from qmri.habitats.files import habitats_from_files, summary
from qmri.habitats.statistics import cohort_row
from qmri.models import command
from qmri.resultset import recover
from qmri.roistats import region_statistics
from qmri.workflows.job import plan_fit, run_fit, split_options

DONE, SKIPPED, FAILED = "done", "skipped", "failed"
#: Provenance keys a cohort adds to every map's sidecar (there ``CohortStep``, ``CohortConfigSha256``).
STEP_KEY, HASH_KEY = "cohort_step", "cohort_config_sha256"
SIDECAR_STEP, SIDECAR_HASH = "CohortStep", "CohortConfigSha256"
LOGS = "logs"
GROUP = "group"


@dataclass
class TaskResult:
    """What one task did.

    Attributes
    ----------
    participant : str
        ``sub-01``, ``sub-01_ses-1``, or ``group``.
    step : str
    status : str
        ``done``, ``skipped`` or ``failed``.
    seconds : float
    message : str
        One line: why it was skipped, or the error.
    value : object
        What a group task hands back (statistics, habitat rows).
    """

    participant: str
    step: str
    status: str
    seconds: float = 0.0
    message: str = ""
    value: object = None


@dataclass(frozen=True)
class Task:
    """What every task has: who, which step, where the outputs go, forced or not, threads (None:
    every core of the worker, shared among its task slots)."""

    participant: str
    step: str
    out_dir: Path
    force: bool = False
    threads: int | None = None

    @property
    def label(self) -> str:
        return f"{self.participant}_step-{self.step}"

    def log_path(self) -> Path:
        return Path(self.out_dir) / LOGS / f"{self.label}.log"

    def describe(self) -> str:
        return f"{self.participant} step {self.step}"

    def run(self, log: logging.Logger) -> tuple[str, str, object]:  # pragma: no cover - abstract
        raise NotImplementedError


def worker_threads() -> int:
    """Threads for one task: the cores this process may use, shared among the task slots of the Dask
    worker it runs in (one slot outside Dask)."""
    from qmri.threads import available

    try:
        from distributed import get_worker

        slots = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        slots = 1
    return max(1, available() // max(1, slots))


class _ThreadRecords(logging.Handler):
    """Keeps the formatted records emitted by one thread."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.thread = threading.get_ident()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record):
        if record.thread == self.thread:
            self.lines.append(self.format(record))


def execute(task: Task) -> TaskResult:
    """Run ``task`` (what each Dask task calls): threads, log capture, errors as a failed result, the log.

    Never raises for a failure of the task itself: a :class:`~qmri.errors.QMRIInputError` gives its
    message, any other exception ``<type>: <message>`` (traceback in the log).
    """
    from qmri.threads import set_threads

    t0 = time.perf_counter()
    n_threads = task.threads or worker_threads()
    set_threads(n_threads)
    logger = logging.getLogger("qmri")
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    capture = _ThreadRecords()
    logger.addHandler(capture)
    log = logging.getLogger("qmri.cohort")
    head = [f"qmri {__version__} cohort task {task.describe()}",
            f"started {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')} on {socket.gethostname()} "
            f"(pid {os.getpid()}, {n_threads} thread(s))"]
    trace = ""
    try:
        status, message, value = task.run(log)
    except QMRIInputError as exc:
        status, message, value = FAILED, str(exc), None
    except Exception as exc:  # noqa: BLE001 - every failure of one task is reported, the others go on
        status, message, value = FAILED, f"{type(exc).__name__}: {exc}".splitlines()[0], None
        trace = traceback.format_exc()
    finally:
        logger.removeHandler(capture)
    seconds = time.perf_counter() - t0
    if status != SKIPPED:
        tail = [f"{status} in {seconds:.2f} s" + (f": {message}" if message else "")] + ([trace] if trace else [])
        try:
            io.write_text(task.log_path(), "\n".join(head + capture.lines + tail) + "\n")
        except OSError as exc:
            if status != FAILED:
                status, message = FAILED, f"cannot write the log {task.log_path()} ({exc})"
    return TaskResult(task.participant, task.step, status, seconds, message, value)


# ---------------------------------------------------------------------------------------------
# Participant level: fits
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FitTask(Task):
    """One fit step of one participant (the fields after :class:`Task`'s: what to fit and how).

    ``options`` are the command's options by Python keyword (files already chosen for this
    participant); ``digest`` is the configuration hash recorded in the sidecars.
    """

    command: str = ""
    series: Path | None = None
    mask: Path | None = None
    method: str | None = None
    options: dict = field(default_factory=dict)
    bounds: dict | None = None
    digest: str = ""

    def describe(self) -> str:
        return f"{self.participant} step {self.step}: qmri {self.command} {self.series}"

    def plan(self):
        """The fit's :class:`~qmri.workflows.job.FitPlan` (inputs read and checked, outputs named)."""
        cls = command(self.command)
        inputs, model_opts, method_opts = split_options(cls, self.options, f"step {self.step}")
        return plan_fit(cls, self.series, out_dir=self.out_dir, mask=self.mask, method=self.method, bounds=self.bounds,
                        model_options=model_opts, method_options=method_opts, bids=True, **inputs)

    def is_current(self) -> bool:
        """Whether the outputs exist with this configuration (the task would be skipped); False also
        when the inputs cannot be read (running the task then reports why)."""
        previous = logging.root.manager.disable
        logging.disable(logging.INFO)  # what the inputs say is logged when the task runs, not here
        try:
            return outputs_state(self.plan(), self.digest)[0] == "current"
        except Exception:  # noqa: BLE001 - the task itself reports it
            return False
        finally:
            logging.disable(previous)

    def run(self, log):
        plan = self.plan()
        state, why = outputs_state(plan, self.digest)
        if state == "current" and not self.force:
            return SKIPPED, "outputs exist with the same configuration", None
        if state == "other" and not self.force:
            raise QMRIInputError(f"{why}; use --force to redo it")
        log.info("config sha256 %s; series %s; mask %s; options %s", self.digest, self.series, self.mask,
                 self.options)
        outcome = run_fit(plan, force=self.force, on_start=lambda line: log.info("%s", line),
                          provenance={STEP_KEY: self.step, HASH_KEY: self.digest})
        log.info("%s", outcome.maps.summary())
        for line in outcome.warnings:
            log.warning("%s", line)
        return DONE, f"{len(outcome.written)} files", {"warnings": list(outcome.warnings)}


def read_sidecar(path) -> dict:
    """A JSON sidecar as a dict ({} when missing or unreadable)."""
    try:
        data = io.read_json(path, "JSON sidecar")
    except QMRIInputError:
        return {}
    return data if isinstance(data, dict) else {}


def outputs_state(plan, digest: str) -> tuple[str, str]:
    """Whether a planned fit's outputs are ``absent``, ``current`` (every file there, every map's
    sidecar with configuration hash ``digest``) or from ``other`` work (with why). Result sets left
    by killed runs in the output folder are settled first (:func:`qmri.resultset.recover`)."""
    for folder in dict.fromkeys(p.parent for p in plan.outputs):
        recover(folder)
    existing = [p for p in plan.outputs if p.exists()]
    if not existing:
        return "absent", ""
    for _, nii in plan.maps.values():
        side = read_sidecar(io.sidecar_path(nii))
        if side.get(SIDECAR_HASH) != digest:
            by = (f"step {side[SIDECAR_STEP]} with another configuration" if SIDECAR_STEP in side
                  else "another run (not this cohort)")
            return "other", f"{nii if nii.exists() else existing[0]} exists, written by {by}"
    missing = [p for p in plan.outputs if not p.exists()]
    if missing:
        return "other", f"{missing[0]} is missing from a set of outputs"
    return "current", ""


# ---------------------------------------------------------------------------------------------
# Group level: ROI statistics, habitats
# ---------------------------------------------------------------------------------------------
def step_maps(folder, step: str, digest: str) -> dict:
    """The maps a fit step wrote for one participant (its derivative folder ``folder``):
    ``{map name: (kind, NIfTI path, unit)}`` in the fit's output order.

    Raises
    ------
    QMRIInputError
        No maps of that step, or maps of another configuration (the participant level must run first).
    """
    folder = Path(folder)
    found, other = None, None
    for side_path in sorted(folder.glob("*/*.json")) if folder.is_dir() else []:
        side = read_sidecar(side_path)
        if side.get(SIDECAR_STEP) != step or "MapFiles" not in side:
            continue
        if side.get(SIDECAR_HASH) == digest:
            found = (side_path.parent, side)
            break
        other = side_path
    if found is None:
        if other is not None:
            raise QMRIInputError(f"{other}: maps of step {step} from another configuration; run the participant "
                                 "level again (with --force)")
        raise QMRIInputError(f"{folder}: no maps of step {step}; run the participant level first")
    where, side = found
    recover(where)
    out = {}
    for name, file in side["MapFiles"].items():
        nii = where / file
        own = read_sidecar(io.sidecar_path(nii))
        if not nii.is_file() or own.get(SIDECAR_HASH) != digest:
            raise QMRIInputError(f"{nii}: missing or of another run than the other maps of step {step}; run the "
                                 "participant level again (with --force)")
        out[name] = (own.get("Kind", ""), nii, own.get("Units", ""))
    return out


@dataclass(frozen=True)
class StatsTask(Task):
    """ROI statistics of every parameter map of one participant (``steps``: ``(step, digest)`` pairs),
    and the files of the habitat ``features`` (``(feature, step, map)`` triples)."""

    subject: str = ""
    session: str | None = None
    roi: Path | None = None
    steps: tuple = ()
    statistics: tuple = ()
    features: tuple = ()

    def run(self, log):
        p = Participant(self.subject, self.session)
        maps = {step: step_maps(Path(self.out_dir) / p.folder(), step, d) for step, d in self.steps}
        roi, affine, _ = load_roi(self.roi)
        voxel_ml = float(abs(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0
        row = {"participant_id": f"sub-{self.subject}",
               "session_id": "" if self.session is None else f"ses-{self.session}",
               "roi_voxels": int(roi.sum()), "roi_volume_ml": float(roi.sum() * voxel_ml)}
        units = {"roi_volume_ml": "mL"}
        cache = {}
        for step, found in maps.items():
            for name, (kind, path, _) in found.items():
                if kind != "parameter":
                    continue
                data, unit, how = map_on_grid(MapSource(name, path), roi.shape, affine, cache, mask=self.roi)
                if how:
                    log.info("%s %s resampled onto the ROI grid: %s", step, name, how)
                st = region_statistics(data[roi])
                for s in self.statistics:
                    row[f"{step}_{name}_{s}"] = st[s]
                    units[f"{step}_{name}_{s}"] = "" if s == "nan_fraction" else unit
        features = {}
        for feature, step, name in self.features:
            if name not in maps[step]:
                raise QMRIInputError(f"[habitat] maps: step {step} has no map {name!r} for {self.participant} "
                                     f"(it has {', '.join(maps[step])})")
            features[feature] = str(maps[step][name][1])
        log.info("%d statistics of %d map(s) in %d ROI voxels (%s)", len(row) - 4,
                 sum(len(m) for m in maps.values()), int(roi.sum()), self.roi)
        return DONE, "", {"row": row, "units": units, "features": features, "roi": str(self.roi)}


@dataclass(frozen=True)
class HabitatTask(Task):
    """The population habitat model: ``subjects`` are ``(id, roi path, ((feature, map path), ...))``;
    ``settings`` those of :data:`qmri.habitats.analysis.OPTIONS`, or ``model`` a saved model to apply.
    Writes into ``OUT_DIR/group/``: ``habitat_cohort.csv`` (the inputs, as ``qmri habitat --cohort``
    reads them), ``habitats/<id>/`` and ``habitat_model.json`` (when fitted)."""

    subjects: tuple = ()
    settings: dict = field(default_factory=dict)
    model: Path | None = None

    def run(self, log):
        group = Path(self.out_dir) / GROUP
        names = [f for f, _ in self.subjects[0][2]]
        lines = [",".join(["id", "mask"] + names)]
        for sid, roi, feats in self.subjects:
            lines.append(",".join([sid] + [os.path.relpath(p, group) for p in [roi] + [f for _, f in feats]]))
        table = group / "habitat_cohort.csv"
        io.write_text(table, "\n".join(lines) + "\n")
        # the group outputs are redone as a whole: files of an earlier, unfinished group run are replaced
        outcome = habitats_from_files(cohort=table, out_dir=group / "habitats", model=self.model,
                                      save_model=None if self.model else group / "habitat_model.json", force=True,
                                      on_start=lambda line: log.info("%s", line), **self.settings)
        log.info("%s", summary(outcome))
        rows = {r.subject.id: cohort_row(r.subject.id, r.stats, r.subject.names, r.subject.n_dropped)
                for r in outcome.result.subjects}
        units = dict(zip(outcome.result.model.names, outcome.result.model.units))
        return DONE, f"k = {outcome.result.model.k}", {"rows": rows, "units": units}


@dataclass(frozen=True)
class PredictTask(Task):
    """The outcome model (``[predict]``): :func:`qmri.workflows.predict_files.predict_from_files` on the
    habitat cohort table the habitat task wrote, the outcome a column of ``participants``
    (``participants.tsv``); outputs in ``OUT_DIR/group/predict/``."""

    participants: Path | None = None
    outcome: str = ""
    positive: str | None = None
    habitat: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def run(self, log):
        from qmri.workflows.predict_files import predict_from_files

        group = Path(self.out_dir) / GROUP
        out = predict_from_files(cohort=group / "habitat_cohort.csv", outcome=f"{self.participants}:{self.outcome}",
                                 positive=self.positive, out_dir=group / "predict", force=True,
                                 habitat=dict(self.habitat), on_start=lambda line: log.info("%s", line),
                                 progress=lambda line: log.info("%s", line), **self.settings)
        m = out.metrics["Metrics"]
        for note in out.notes:
            log.info("note: %s", note)
        lo, hi = m["auc_ci95"]
        line = f"AUC {m['auc']:.3f} (95% CI {lo:.3f}-{hi:.3f}), n {m['n']}"
        log.info("%s; %d files in %s", line, len(out.written), group / "predict")
        return DONE, line, {"metrics": m}
