"""``qmri cohort BIDS_DIR OUT_DIR participant|group``: :func:`run_cohort`, the one library call.

Participant level
    One task per participant (subject, or subject and session) and fit step
    (:class:`~qmri.cohort.tasks.FitTask`), written into ``OUT_DIR`` as a BIDS derivative dataset
    (``dataset_description.json`` with a link to the raw dataset; per map a NIfTI and its JSON
    sidecar, recording the step and its configuration hash).
Group level
    One task per participant computing the ROI statistics of every parameter map
    (:class:`~qmri.cohort.tasks.StatsTask`), then one task fitting the population habitat model
    (:class:`~qmri.cohort.tasks.HabitatTask`), then the cohort table ``OUT_DIR/group/cohort.csv``: one
    row per participant (``participant_id``, ``session_id``, ROI size, ``<step>_<map>_<statistic>``,
    ``habitat_*`` columns: fractions, volumes and per-habitat means), ready to join a clinical table
    (``participants.tsv``) on ``participant_id``; ``cohort.json`` beside it gives the columns' units,
    the configuration hashes and the participants that failed. With ``[predict]``, one more task
    (:class:`~qmri.cohort.tasks.PredictTask`) cross-validates an outcome model of a column of
    ``participants.tsv`` from the habitats (``qmri predict``), into ``OUT_DIR/group/predict/``.

Resume: a participant task whose outputs exist with the same configuration hash is skipped; outputs
of another configuration are refused unless ``force``. The group level is skipped when its table
exists for the same configuration and the same participant outputs with no failure; it is redone
when only the participants' outputs changed (new participants, refitted ones), and refused when its
configuration changed unless ``force``. A failing task is reported (participant, step, message)
and the others go on. Every task writes its log to ``OUT_DIR/logs/``, and each run a table of its
tasks (``logs/<level>_tasks.csv``).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from qmri import io
from qmri.bids import write_dataset_description
from qmri.cohort.config import digest, load_config
from qmri.cohort.dataset import Datasets, Selector, participants
from qmri.cohort.tasks import (
    DONE,
    FAILED,
    GROUP,
    LOGS,
    SKIPPED,
    FitTask,
    HabitatTask,
    PredictTask,
    StatsTask,
    TaskResult,
    read_sidecar,
)
from qmri.errors import QMRIInputError
from qmri.masking import is_auto
from qmri.resultset import ResultSet, check_writable
from qmri.roistats import rows_to_csv

LEVELS = ("participant", "group")
TABLE, TABLE_SIDECAR = "cohort.csv", "cohort.json"


@dataclass
class CohortOutcome:
    """What :func:`run_cohort` did: every task's result, the engine, the seconds, the cohort table."""

    level: str
    results: list = field(default_factory=list)
    seconds: float = 0.0
    engine: str = ""
    dashboard: str | None = None
    table: Path | None = None

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failures(self) -> list:
        return [r for r in self.results if r.status == FAILED]

    @property
    def warnings(self) -> list[str]:
        """``<participant> <step>: <warning>`` for each sign that a fit is evidently wrong
        (:meth:`qmri.maps.ParameterMaps.warnings`; also in the task's log)."""
        return [f"{r.participant} {r.step}: {w}" for r in self.results if r.status == DONE and isinstance(r.value, dict)
                for w in r.value.get("warnings", [])]

    def summary(self) -> str:
        line = (f"{self.level} level: {len(self.results)} task(s): {self.count(DONE)} done, {self.count(SKIPPED)} "
                f"skipped, {self.count(FAILED)} failed in {self.seconds:.1f} s")
        if self.engine:
            line += f" ({self.engine})"
        if self.table is not None:
            line += f"\ncohort table: {self.table}"
        return line

    def failure_table(self) -> str:
        """The failed tasks, one per line: participant, step, error."""
        rows = [("participant", "step", "error")] + [(r.participant, r.step, r.message) for r in self.failures]
        w0, w1 = (max(len(r[i]) for r in rows) for i in (0, 1))
        return "\n".join(f"{a.ljust(w0)}  {b.ljust(w1)}  {c}" for a, b, c in rows)


def fit_task(step, p, datasets: Datasets, out_dir, *, force: bool = False) -> FitTask:
    """The task of fit ``step`` for participant ``p``: its files chosen, its configuration hash computed
    (the step's configuration and its input files, relative to the raw dataset).

    Raises
    ------
    QMRIInputError
        No file, or several, for one of the step's selectors.
    """
    bids_dir = datasets.bids_dir
    series = datasets.find(step.series, p)
    mask = step.mask if step.mask is None or is_auto(step.mask) else datasets.find(step.mask, p)
    files = {k: datasets.find(v, p) for k, v in step.options.items() if isinstance(v, Selector)}
    options = {k: str(files[k]) if k in files else v for k, v in step.options.items()}

    def rel(path):
        return path if path is None or is_auto(path) else os.path.relpath(path, bids_dir)

    d = digest({"step": step.record(), "series": rel(series), "mask": rel(mask),
                "files": {k: rel(v) for k, v in sorted(files.items())}})
    return FitTask(p.id, step.name, Path(out_dir), force, command=step.command, series=series, mask=mask,
                   method=step.method, options=options, bounds=step.bounds, digest=d)


def run_cohort(bids_dir, out_dir, level: str, config, *, participant_labels=None, scheduler: str | None = None,
               workers: int | None = None, threads: int | None = None, force: bool = False, progress: bool = False,
               on_start=None, client=None) -> CohortOutcome:
    """Run one level of a cohort (see the module docstring).

    Parameters
    ----------
    bids_dir : path
        The raw BIDS dataset.
    out_dir : path
        The derivative dataset (created if needed), e.g. ``BIDS_DIR/derivatives/qmri``.
    level : {"participant", "group"}
    config : path
        ``steps.toml`` (:mod:`qmri.cohort.config`).
    participant_labels : list of str, optional
        Subjects to run (``01`` or ``sub-01``); default every one.
    scheduler : str, optional
        Address of an existing Dask scheduler; default a local cluster (:func:`qmri.cohort.engine.connect`).
    workers, threads : int, optional
        Local worker processes; threads per task.
    force : bool
        Redo tasks whose outputs exist.
    progress : bool
        Progress bar over the tasks.
    on_start : callable, optional
        Called with one line (the tasks and the engine, with the dashboard's address) before they run.
    client : distributed.Client, optional
        Run on this client instead (not closed).

    Returns
    -------
    CohortOutcome
        Failed tasks are in its results; nothing is raised for them.

    Notes
    -----
    The local cluster's workers are processes started afresh (``spawn``): a script that calls this
    function must do so under ``if __name__ == "__main__":``.

    Raises
    ------
    QMRIInputError
        Bad configuration, dataset, level or engine settings (nothing runs).
    """
    t0 = time.perf_counter()
    if level not in LEVELS:
        raise QMRIInputError(f"analysis level must be participant or group, got {level!r}")
    cfg = load_config(config)
    bids_dir, out_dir = Path(bids_dir), Path(out_dir)
    if out_dir.resolve() == bids_dir.resolve():
        raise QMRIInputError(f"{out_dir}: the output folder must not be the BIDS dataset itself (e.g. use "
                             f"{bids_dir / 'derivatives' / 'qmri'})")
    check_writable(out_dir)  # before any task runs
    people = participants(bids_dir, participant_labels)
    datasets = Datasets(bids_dir)
    if level == "participant":
        outcome = _participant(cfg, people, datasets, out_dir, force, dict(scheduler=scheduler, workers=workers,
                               threads=threads, client=client), progress, on_start)
    else:
        outcome = _group(cfg, people, datasets, out_dir, force, dict(scheduler=scheduler, workers=workers,
                         threads=threads, client=client), progress, on_start)
    outcome.seconds = time.perf_counter() - t0
    _write_task_table(out_dir, outcome)
    return outcome


def _prepare_out_dir(bids_dir: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_dataset_description(out_dir, {"raw": os.path.relpath(bids_dir.resolve(), out_dir.resolve())})
    ignore = out_dir / ".bidsignore"
    if not ignore.exists():
        io.write_text(ignore, f"{LOGS}/\n{GROUP}/\n")


class _Engine:
    """The engine of one level, started on first use (a level with nothing to run starts none)."""

    def __init__(self, engine_args: dict, n_tasks: int, on_start, level: str):
        self.args, self.n_tasks, self.on_start, self.level = engine_args, n_tasks, on_start, level
        self.stack = contextlib.ExitStack()
        self.engine = None

    def run(self, tasks, progress: bool) -> list:
        from qmri.cohort.engine import connect, run_tasks

        if not tasks:
            return []
        if self.engine is None:
            self.engine = self.stack.enter_context(connect(n_tasks=self.n_tasks, **self.args))
            if self.on_start is not None:
                self.on_start(f"{self.level} level: {self.n_tasks} task(s) on {self.engine.description}"
                              + (f"; dashboard {self.engine.dashboard}" if self.engine.dashboard else ""))
        return run_tasks(self.engine, tasks, progress=progress, desc=f"qmri cohort {self.level}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stack.close()

    def describe(self, outcome: CohortOutcome) -> CohortOutcome:
        if self.engine is not None:
            outcome.engine, outcome.dashboard = self.engine.description, self.engine.dashboard
        return outcome


def _participant(cfg, people, datasets, out_dir, force, engine_args, progress, on_start) -> CohortOutcome:
    tasks, results = [], []
    for p in people:
        for step in cfg.fits.values():
            try:
                task = fit_task(step, p, datasets, out_dir, force=force)
            except QMRIInputError as exc:
                results.append(TaskResult(p.id, step.name, FAILED, 0.0, str(exc)))
                continue
            if not force and task.is_current():  # known here: no worker needed
                results.append(TaskResult(p.id, step.name, SKIPPED, 0.0, "outputs exist with the same configuration"))
            else:
                tasks.append(task)
    _prepare_out_dir(datasets.bids_dir, out_dir)
    with _Engine(engine_args, len(tasks), on_start, "participant") as engine:
        ran = engine.run(tasks, progress)
    order = {(p.id, s): i for i, (p, s) in enumerate((p, s) for p in people for s in cfg.fits)}
    results = sorted(ran + results, key=lambda r: order[(r.participant, r.step)])
    return engine.describe(CohortOutcome("participant", results))


def _group(cfg, people, datasets, out_dir, force, engine_args, progress, on_start) -> CohortOutcome:
    if cfg.roi is None:
        raise QMRIInputError(f"{cfg.path}: the group level needs a [roi] table (the ROI masks)")
    features = tuple((f, s, m) for f, (s, m) in cfg.habitat.features.items()) if cfg.habitat else ()
    tasks, failed, inputs = [], [], {}
    for p in people:
        try:
            steps = tuple((s.name, fit_task(s, p, datasets, out_dir).digest) for s in cfg.fits.values())
            roi = datasets.find(cfg.roi.mask, p)
        except QMRIInputError as exc:
            failed.append(TaskResult(p.id, "stats", FAILED, 0.0, str(exc)))
            continue
        inputs[p.id] = {"roi": os.path.relpath(roi, datasets.bids_dir), "steps": dict(steps)}
        tasks.append(StatsTask(p.id, "stats", out_dir, force, subject=p.subject, session=p.session, roi=roi,
                               steps=steps, statistics=cfg.roi.statistics, features=features))
    config_hash = digest({"fits": [s.record() for s in cfg.fits.values()], "roi": cfg.roi.record(),
                          "habitat": cfg.habitat.record() if cfg.habitat else None,
                          **({"predict": cfg.predict.record()} if cfg.predict else {})})
    inputs_hash = digest(inputs)
    group = out_dir / GROUP
    table, side = group / TABLE, group / TABLE_SIDECAR
    record = read_sidecar(side) if table.exists() else {}
    if record and not force:
        if record.get("ConfigSha256") != config_hash:
            why = f"{table} exists, made with another configuration; use --force to redo it"
            return CohortOutcome("group", failed + [TaskResult("group", "table", FAILED, 0.0, why)])
        if record.get("InputsSha256") == inputs_hash and not record.get("Failed") and not failed:
            steps = [(t.participant, "stats") for t in tasks] + ([("group", "habitat")] if cfg.habitat else []) \
                + ([("group", "predict")] if cfg.predict else [])
            return CohortOutcome("group", [TaskResult(pid, st, SKIPPED, 0.0, "the cohort table is up to date")
                                           for pid, st in steps], table=table)
    _prepare_out_dir(datasets.bids_dir, out_dir)
    n_group = (cfg.habitat is not None) + (cfg.predict is not None)
    with _Engine(engine_args, len(tasks) + n_group, on_start, "group") as engine:
        results = engine.run(tasks, progress)
        stats = {r.participant: r.value for r in results if r.status == DONE}
        habitat_rows, habitat_units = {}, {}
        if cfg.habitat is not None and stats:
            subjects = tuple((pid, v["roi"], tuple((f, v["features"][f]) for f, _, _ in features))
                             for pid, v in stats.items())
            h = HabitatTask("group", "habitat", out_dir, force, subjects=subjects, settings=dict(cfg.habitat.settings),
                            model=cfg.habitat.model)
            ran = engine.run([h], False)
            results += ran
            if ran[0].status == DONE:
                habitat_rows, habitat_units = ran[0].value["rows"], ran[0].value["units"]
                if cfg.predict is not None:
                    pr = PredictTask("group", "predict", out_dir, force, participants=datasets.bids_dir /
                                     "participants.tsv", outcome=cfg.predict.outcome, positive=cfg.predict.positive,
                                     habitat=dict(cfg.habitat.settings), settings=dict(cfg.predict.settings))
                    results += engine.run([pr], False)
    outcome = engine.describe(CohortOutcome("group", failed + results))
    if not stats:
        return outcome
    rows, units = cohort_rows(stats, habitat_rows, habitat_units)
    meta = {"Description": "qmri cohort table: one row per participant (subject, or subject and session): ROI "
                           "statistics of every parameter map (<step>_<map>_<statistic>) and, with [habitat], the "
                           "habitat fractions, volumes and per-habitat means (habitat_*)",
            "Config": str(cfg.path), "ConfigSha256": config_hash, "InputsSha256": inputs_hash,
            "Participants": list(stats), "Failed": [{"participant": r.participant, "step": r.step,
                                                    "error": r.message} for r in outcome.failures],
            "Columns": {k: {"Units": u} for k, u in units.items() if u}}

    with ResultSet(group, [TABLE, TABLE_SIDECAR], force=True) as rs:
        io.write_text(rs.path(TABLE), rows_to_csv(rows))
        io.write_json(rs.path(TABLE_SIDECAR), meta)
    outcome.table = table
    return outcome


def cohort_rows(stats: dict, habitat_rows: dict, habitat_units: dict) -> tuple[list, dict]:
    """The cohort table's rows (every row with the same columns, NaN where a participant lacks one) and
    the unit of each column, from the statistics tasks' values and the habitat rows (columns
    ``habitat_<name>``; a feature's mean per habitat in the feature's unit)."""
    rows, units = [], {}
    for pid, v in stats.items():
        row = dict(v["row"])
        units.update(v["units"])
        h = habitat_rows.get(pid)
        if h is not None:
            row.update({f"habitat_{k}": val for k, val in h.items() if k != "id"})
        rows.append(row)
    for name, unit in habitat_units.items():
        for col in {c for r in rows for c in r if c.startswith(f"habitat_{name}_mean_h")}:
            units[col] = unit
    units.update({c: "mL" for r in rows for c in r if c.startswith("habitat_volume_ml")})
    if not any(r["session_id"] for r in rows):  # a dataset without sessions
        for r in rows:
            del r["session_id"]
    columns = list(dict.fromkeys(c for r in rows for c in r))
    return [{c: r.get(c, math.nan) for c in columns} for r in rows], units


def _write_task_table(out_dir: Path, outcome: CohortOutcome) -> None:
    """``OUT_DIR/logs/<level>_tasks.csv``: one row per task of this run."""
    if not outcome.results or not out_dir.is_dir():
        return
    rows = [{"participant": r.participant, "step": r.step, "status": r.status, "seconds": float(r.seconds),
             "message": r.message} for r in outcome.results]
    io.write_text(out_dir / LOGS / f"{outcome.level}_tasks.csv", rows_to_csv(rows, digits=4))
