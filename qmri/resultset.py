"""A set of output files that appears whole or not at all: :class:`ResultSet`.

A fit writes a set of files (one NIfTI and one sidecar per map, extra tables, figures); a phantom
another. Each file alone being written atomically is not enough: a run killed halfway would leave
some maps that look valid beside none of the others. A :class:`ResultSet` therefore writes every
file of the set into a hidden staging folder inside the output folder (same file system, so a
rename moves a file without copying it), and moves them into place only once all are written:

1. *Stage.* ``<out_dir>/.qmri-<id>.partial/`` is created and locked (an exclusive ``flock`` on
   its ``.lock`` file, held while the set is open; the kernel drops it when the process dies,
   even with ``kill -9``). Writers write into :meth:`ResultSet.path`.
2. *Commit.* When every planned file exists, a journal (``.commit``, the list of names) is written
   into the stage with an atomic rename, then each file is renamed into place and the stage
   removed.
3. *Recovery.* Before anything is checked or written in a folder, stages whose lock is free (the
   run that made them is gone) are settled: one with a journal was complete, so its remaining
   files are moved into place (the set is finished, as its run would have); one without is
   removed. Locked stages belong to a live run and are left alone.

So whatever kills a run, the folder holds, once recovered, either nothing of it or its complete
set; only the commit's renames (microseconds) can be cut, and recovery finishes them. SIGINT and
SIGTERM (in the main thread) unwind the Python stack, which removes the stage at once; any other
death leaves the stage to the next recovery, which :meth:`ParameterMaps.load
<qmri.maps.ParameterMaps.load>` and every writer of that folder run first. File modes follow the
umask, as ``open()`` gives them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path

from qmri.errors import OutputExistsError

STAGE_PREFIX = ".qmri-"
STAGE_SUFFIX = ".partial"
_LOCK = ".lock"
_JOURNAL = ".commit"
#: A stage without a lock file younger than this (s) may be one a live run is creating.
_YOUNG_S = 60.0

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: stages are left to their owner
    fcntl = None


def refuse_existing(paths, force: bool) -> None:
    """Raise :class:`OutputExistsError` if one of ``paths`` exists and ``force`` is False.

    The folders of ``paths`` are recovered first (:func:`recover`), so the outputs of a run that
    was killed while moving its set into place are judged complete, and its leftovers gone.
    """
    paths = [Path(p) for p in paths]
    for folder in dict.fromkeys(p.parent for p in paths):
        recover(folder)
    if force:
        return
    existing = [p for p in paths if p.exists()]
    if existing:
        raise OutputExistsError(f"{existing[0]} exists ({len(existing)} output file(s) in all); "
                                "use --force to overwrite")


def stages(folder) -> list[Path]:
    """Staging folders of result sets in ``folder`` (live or left by a run that died)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{STAGE_PREFIX}*{STAGE_SUFFIX}") if p.is_dir())


def recover(folder) -> list[Path]:
    """Settle the stages that runs which are gone left in ``folder``; return the stages settled.

    A stage with a commit journal is finished (its remaining files moved into place); one without
    is removed. Stages still locked by a live run are left alone. Errors (a read-only folder,
    say) leave a stage as it is.
    """
    settled = []
    for stage in stages(folder):
        lock = _try_lock(stage)
        if lock is None:
            continue
        try:
            _finish(stage, Path(folder))
            settled.append(stage)
        except OSError:
            pass
        finally:
            os.close(lock)
    return settled


def _try_lock(stage: Path) -> int | None:
    """A locked descriptor of ``stage``'s lock file if no live run holds it, else None."""
    if fcntl is None:
        return None
    try:
        fd = os.open(stage / _LOCK, os.O_RDWR)
    except FileNotFoundError:
        # being created right now, or its creator died before locking it
        try:
            old = time.time() - stage.stat().st_mtime > _YOUNG_S
        except OSError:
            return None
        return os.open(os.devnull, os.O_RDONLY) if old else None
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _finish(stage: Path, folder: Path) -> None:
    """Complete a committed stage (move its remaining files into ``folder``), then remove it."""
    journal = stage / _JOURNAL
    if journal.exists():
        for name in journal.read_text().splitlines():
            src = stage / name
            if name and src.exists():
                os.replace(src, folder / name)
    shutil.rmtree(stage, ignore_errors=True)


class ResultSet:
    """Files written together: staged in a hidden folder beside the outputs, moved into place at the end.

    Use as a context manager::

        with ResultSet(out_dir, ["D.nii.gz", "D.json"], force=False) as rs:
            write_map(rs.path("D.nii.gz"), ...)
            write_json(rs.path("D.json"), ...)
        # both files are in out_dir now; on an exception, neither is

    Parameters
    ----------
    out_dir : path
        Folder of the outputs (created if needed).
    names : list of str
        File names of the set, relative to ``out_dir``; every one must be written.
    force : bool
        Replace existing files. Without it, :class:`OutputExistsError` is raised on entry (and
        again at the commit, if another run wrote one meanwhile) and nothing is written.

    Attributes
    ----------
    id : str
        Identifier of this set (recorded by writers that want to, e.g. the map sidecars).
    names : list of str
    targets : list of Path
        Final paths of the files, in the order of ``names``.
    """

    def __init__(self, out_dir, names, *, force: bool = False):
        self.out_dir = Path(out_dir)
        self.names = list(dict.fromkeys(str(n) for n in names))
        bad = [n for n in self.names if Path(n).name != n or n.startswith(STAGE_PREFIX)]
        if bad:
            raise ValueError(f"result-set names must be plain file names, got {bad[0]!r}")
        self.force = force
        self.id = uuid.uuid4().hex
        self.stage: Path | None = None
        self._lock: int | None = None
        self._caught = False

    @property
    def targets(self) -> list[Path]:
        return [self.out_dir / n for n in self.names]

    def path(self, name: str) -> Path:
        """Where to write ``name`` (a file of the set) while the set is open."""
        if self.stage is None:
            raise RuntimeError("the result set is not open (use it in a with statement)")
        if name not in self.names:
            raise ValueError(f"{name!r} is not a file of this result set ({', '.join(self.names)})")
        return self.stage / name

    def __enter__(self) -> "ResultSet":
        refuse_existing(self.targets, self.force)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._catch_sigterm()
        try:
            self.stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{self.id[:12]}-", suffix=STAGE_SUFFIX,
                                               dir=self.out_dir))
            if fcntl is not None:
                self._lock = os.open(self.stage / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(self._lock, fcntl.LOCK_EX)
                except OSError:  # no locks on this file system: nobody else can lock it either
                    pass
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            self._close()

    def _close(self) -> None:
        try:
            if self.stage is not None:
                # a commit cut short (Ctrl-C between two renames) is finished, not undone
                _finish(self.stage, self.out_dir)
        finally:
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None
            self.stage = None
            self._restore_sigterm()

    def _commit(self) -> None:
        missing = [n for n in self.names if not (self.stage / n).exists()]
        if missing:
            raise RuntimeError(f"result set incomplete: {', '.join(missing)} not written")
        if not self.force:
            existing = [t for t in self.targets if t.exists()]
            if existing:
                raise OutputExistsError(f"{existing[0]} appeared while this run was writing; use --force to "
                                        "overwrite")
        tmp = self.stage / (_JOURNAL + ".tmp")
        tmp.write_text("\n".join(self.names) + "\n")
        os.replace(tmp, self.stage / _JOURNAL)
        for name in self.names:
            os.replace(self.stage / name, self.out_dir / name)

    # SIGTERM unwinds the stack (as SIGINT does) while the set is open, so the stage is removed.
    def _catch_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _terminate)
                self._caught = True

    def _restore_sigterm(self) -> None:
        if self._caught:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self._caught = False


def write_sets(writers: dict, *, force: bool = False) -> list[Path]:
    """Write files given as ``{final path: write(path)}``: the files of each folder as one
    :class:`ResultSet` (all of them or none, even if the process is killed), folder after folder.
    Returns the paths, in the order given."""
    folders = {}
    for path in writers:
        folders.setdefault(Path(path).parent, []).append(path)
    for folder, paths in folders.items():
        with ResultSet(folder, [Path(p).name for p in paths], force=force) as rs:
            for p in paths:
                writers[p](rs.path(Path(p).name))
    return list(writers)


def _terminate(signum, frame):
    raise SystemExit(128 + signum)
