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

*Replacing* (``force=True``) replaces the whole earlier set: the files that the sidecars being
replaced list as their set (``ResultSet.Files``) and this set does not write are removed once the
new set is in place (listed in the journal, so recovery removes them too); files of other sets or
of no set are never touched.

*Where it cannot write* (a read-only folder or file system, an immutable folder, a path through a
file, ``/dev/null``) :func:`refuse_existing` says so before any work starts
(:class:`OutputFolderError`); a write that fails anyway (disk full, quota, the file system turned
read-only) ends the set with :class:`OutputFolderError` naming the folder and the cause, and
nothing of the set is left. Both are bad-input errors (exit code 2 on the command line).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path

from qmri.errors import OutputExistsError, OutputFolderError

STAGE_PREFIX = ".qmri-"
STAGE_SUFFIX = ".partial"
_LOCK = ".lock"
_JOURNAL = ".commit"
#: In a committed stage: names of the replaced set's files to remove once the new set is in place.
_REMOVE = ".remove"
#: In a folder stage (:func:`replacing_folder`): the folder's name; recovery puts the old folder back.
_RESTORE = ".restore"
#: A stage without a lock file younger than this (s) may be one a live run is creating.
_YOUNG_S = 60.0

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: stages are left to their owner
    fcntl = None


def refuse_existing(paths, force: bool, *, folders: bool = False) -> None:
    """Check, before any work, that the output files ``paths`` can be written.

    Raises :class:`OutputFolderError` if a folder of ``paths`` cannot be written
    (:func:`check_writable`) or a path names an existing folder (unless ``folders``: the outputs
    are folders, as :func:`replacing_folder` writes), and :class:`OutputExistsError` if one of
    ``paths`` exists and ``force`` is False.

    The folders of ``paths`` are recovered first (:func:`recover`), so the outputs of a run that
    was killed while moving its set into place are judged complete, and its leftovers gone.
    """
    paths = [Path(p) for p in paths]
    for folder in dict.fromkeys(p.parent for p in paths):
        check_writable(folder)
        recover(folder)
    if not folders:
        for p in paths:
            if p.is_dir():
                raise OutputFolderError(f"{p}: is a folder, not an output file; name a file")
    if force:
        return
    existing = [p for p in paths if os.path.lexists(p)]
    if existing:
        raise OutputExistsError(f"{existing[0]} exists ({len(existing)} output file(s) in all); "
                                "use --force to overwrite")


def check_writable(folder) -> None:
    """Raise :class:`OutputFolderError` unless files can be created in ``folder`` (or in the folder
    it would be created in: its nearest existing parent).

    Checked: every existing part of the path is a folder (not a file, not ``/dev/null``), and the
    process may create files there (``access(2)``: permissions, a read-only file system, an
    immutable folder). Disk space cannot be known in advance; a write that fails for it ends the
    result set with the same error (:class:`ResultSet`).
    """
    folder = Path(folder)
    probe = folder
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        if probe == folder:
            raise OutputFolderError(f"{folder}: not a folder; the outputs cannot be written into it")
        raise OutputFolderError(f"{folder}: the output folder cannot be created: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputFolderError(f"{folder}: cannot write the outputs here ({_why_not_writable(probe)})")


def _why_not_writable(folder: Path) -> str:
    with contextlib.suppress(OSError, AttributeError):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"{folder} is on a read-only file system"
    return f"no permission to write in {folder}, or it is immutable"


#: ``errno`` values of a write that fails because of where it writes, not because of a bug.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                          errno.EISDIR, errno.EEXIST, errno.EFBIG, errno.ENAMETOOLONG, errno.EMLINK, errno.EIO})


def write_failure(exc: OSError, folder) -> OutputFolderError:
    """The one-line error of a write into ``folder`` that failed with ``exc``."""
    cause = exc.strerror or str(exc)
    return OutputFolderError(f"{folder}: cannot write the outputs ({cause}); nothing of this result set was "
                             "written")


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
    """Complete a committed stage (move its remaining files into ``folder``, remove the replaced
    set's files it lists) or undo a folder stage (:func:`replacing_folder`), then remove it."""
    journal = stage / _JOURNAL
    if journal.exists():
        for name in journal.read_text().splitlines():
            src = stage / name
            if name and src.exists():
                os.replace(src, folder / name)
        removals = stage / _REMOVE
        if removals.exists():
            for name in removals.read_text().splitlines():
                if _plain(name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(folder / name)
    restore = stage / _RESTORE
    if restore.exists():
        name = restore.read_text().strip()
        if _plain(name):
            target = folder / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif os.path.lexists(target):
                os.unlink(target)
            if os.path.lexists(stage / name):
                os.replace(stage / name, target)
    shutil.rmtree(stage, ignore_errors=True)


def _plain(name: str) -> bool:
    """A plain file name of a folder (no separator, not ``.``/``..``, not a stage)."""
    return bool(name) and Path(name).name == name and name not in (".", "..") and not name.startswith(STAGE_PREFIX)


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the folders created, outermost first."""
    made = []
    probe = folder
    while not os.path.lexists(probe) and probe != probe.parent:
        made.append(probe)
        probe = probe.parent
    folder.mkdir(parents=True, exist_ok=True)
    return made[::-1]


def _open_stage(folder: Path, set_id: str) -> tuple[Path, int | None]:
    """A new locked stage in ``folder``: ``(path, lock descriptor)``."""
    stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{set_id[:12]}-", suffix=STAGE_SUFFIX, dir=folder))
    lock = None
    if fcntl is not None:
        try:
            lock = os.open(stage / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
            except OSError:  # no locks on this file system: nobody else can lock it either
                pass
        except BaseException:
            if lock is not None:
                os.close(lock)
            shutil.rmtree(stage, ignore_errors=True)
            raise
    return stage, lock


def replaced_files(folder, names, keep) -> list[str]:
    """Files of the earlier result sets that the files ``names`` of ``folder`` belong to, which the
    new set (``keep``) does not write: the names the old sidecars list as their set
    (``ResultSet.Files``), each checked to belong to that set (a sidecar with that set's id, or a
    file whose sidecar has it, or a listed file of no sidecar beside a sidecar of the set).

    Files of other sets, of no set, or not plain names of ``folder`` are never returned.
    """
    folder = Path(folder)
    keep = set(keep)
    out = []
    for name in names:
        if not name.endswith(".json"):
            continue
        record = _set_record(folder / name)
        if record is None:
            continue
        set_id, files = record
        for old in files:
            if old in keep or old in out or not _plain(old) or not (folder / old).is_file():
                continue
            if old.endswith(".json"):
                mine = _set_record(folder / old)
                belongs = mine is not None and mine[0] == set_id
            else:
                stem = old[:-7] if old.endswith(".nii.gz") else old.rsplit(".", 1)[0]
                side = folder / f"{stem}.json"
                mine = _set_record(side) if side.exists() else None
                belongs = mine[0] == set_id if mine is not None else not side.exists()
            if belongs:
                out.append(old)
    return out


def _set_record(path: Path):
    """``(set id, [file names])`` of the result set a qmri sidecar records, or None."""
    try:
        if path.is_symlink() or path.stat().st_size > 1 << 22:
            return None
        side = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    record = side.get("ResultSet") if isinstance(side, dict) else None
    if not isinstance(record, dict) or not isinstance(record.get("Id"), str) \
            or not isinstance(record.get("Files"), list):
        return None
    return record["Id"], [f for f in record["Files"] if isinstance(f, str)]


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
        self._made: list[Path] = []  # folders this set created (removed again if it fails)
        self._committed = False

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
        self._catch_sigterm()
        try:
            self._made = _make_folder(self.out_dir)
            self.stage, self._lock = _open_stage(self.out_dir, self.id)
        except OSError as exc:
            self._close()
            if exc.errno in WRITE_ERRNOS:
                raise write_failure(exc, self.out_dir) from None
            raise
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._commit()
        except OSError as failed:
            exc = failed
            if failed.errno not in WRITE_ERRNOS:
                raise
        finally:
            self._close()
        # a write that failed because of where it writes (disk full, read-only file system...):
        # one line naming the folder; the stage (every file of the set) is gone already
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            raise write_failure(exc, self.out_dir) from None

    def _close(self) -> None:
        try:
            if self.stage is not None:
                # a commit cut short (Ctrl-C between two renames) is finished, not undone
                _finish(self.stage, self.out_dir)
            if not self._committed:
                for folder in reversed(self._made):  # a failed set leaves no empty folders behind
                    with contextlib.suppress(OSError):
                        folder.rmdir()
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
        if self.force:
            stale = replaced_files(self.out_dir, self.names, keep=self.names)
            if stale:
                (self.stage / _REMOVE).write_text("\n".join(stale) + "\n")
        tmp = self.stage / (_JOURNAL + ".tmp")
        tmp.write_text("\n".join(self.names) + "\n")
        os.replace(tmp, self.stage / _JOURNAL)
        self._committed = True
        # from here on the set is committed: recovery finishes whatever is cut short
        for name in self.names:
            os.replace(self.stage / name, self.out_dir / name)
        # _close() finishes the stage: removes the replaced set's files it lists, then the stage

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


@contextlib.contextmanager
def replacing_folder(folder, *, force: bool = False):
    """Write a whole folder of outputs in place, all of it or nothing: on an exception (or, through
    :func:`recover`, a killed run) the folder written so far is removed and the one it replaced, if
    any, put back; on success the replaced folder is removed.

    The replaced folder waits in a locked stage of the parent folder while the new one is written,
    so the new files are written (and record their paths) where they stay.

    Yields
    ------
    Path
        ``folder`` (absent on entry; write into it).

    Raises
    ------
    OutputExistsError
        ``folder`` exists and ``force`` is False.
    OutputFolderError
        The parent folder cannot be written (:func:`check_writable`).
    """
    folder = Path(folder)
    refuse_existing([folder], force, folders=True)
    parent = folder.parent
    try:
        _make_folder(parent)
        stage, lock = _open_stage(parent, uuid.uuid4().hex)
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise write_failure(exc, parent) from None
        raise
    try:
        (stage / _RESTORE).write_text(folder.name + "\n")  # until the end: recovery undoes this run
        if os.path.lexists(folder):
            os.replace(folder, stage / folder.name)
        yield folder
        os.unlink(stage / _RESTORE)  # done: the new folder stays
    finally:
        try:
            _finish(stage, parent)  # undoes the run if the restore note is still there; removes the stage
        finally:
            if lock is not None:
                os.close(lock)


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
