"""The engine of a cohort run: Dask (``dask.distributed``), on this machine or on an existing cluster.

By default a :class:`distributed.LocalCluster` of worker *processes* is started on the loopback
interface (127.0.0.1: nothing listens on the network), one per :data:`CORES_PER_WORKER` cores, one
task at a time per worker, and each task gets ``cores // workers`` threads for Numba, BLAS and torch
(:func:`qmri.threads.set_threads`), so the cores are never oversubscribed.

The local cluster speaks TLS with credentials made for the run (:meth:`distributed.security.Security.temporary`:
a self-signed key and certificate held in memory, passed to the worker processes when they are
spawned): scheduler, workers and client each present the certificate and require it of the other
side. Another account of the machine can reach the loopback port but cannot connect (no certificate,
or a plain ``tcp://`` connection) and so cannot run code on the workers as the user running the cohort
(a Dask client can run any function on the workers it connects to). Making the key costs about 0.3 s.

With a scheduler address (``tls://HOST:PORT`` or ``tcp://HOST:PORT``) the same tasks go to an existing
cluster (started with ``dask scheduler`` / ``dask worker``, or by dask-jobqueue on SLURM/PBS, or on
Kubernetes); there each task takes the cores of its worker divided by the worker's task slots. The
files must then be on a file system every worker sees, at the same paths. A ``tls://`` scheduler is
reached with the credentials of Dask's own configuration (``distributed.comm.tls.ca-file``,
``distributed.comm.tls.client.cert`` and ``.key``: a ``~/.config/dask/*.yaml`` file or the
``DASK_DISTRIBUTED__COMM__TLS__CA_FILE``... environment variables; see the README); a ``tcp://``
scheduler accepts anyone who can reach its port.

The dashboard's address is reported when the scheduler serves one (it needs ``bokeh``, which is not
a dependency: ``pip install bokeh``).
Dask is imported only here, when a run starts (``qmri --help`` never imports it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import uuid
from dataclasses import dataclass

from tqdm import tqdm

from qmri.cohort.tasks import FAILED, TaskResult, execute
from qmri.errors import QMRIInputError
from qmri.threads import available, check_threads

#: Cores per local worker process by default. Every process pays its start-up and the loading of
#: qmri's compiled kernels once (1-3 s), and a fit uses its threads well (Numba over voxels): on 2
#: cores one process with 2 threads ran 8 small subjects in 5.0 s where 2 processes of 1 thread took
#: 9.0 s, the same per task once started (``benchmarks/cohort.py``; provisional, under load).
CORES_PER_WORKER = 2


@dataclass
class Engine:
    """A connected Dask client and what it runs on.

    Attributes
    ----------
    client : distributed.Client
    description : str
        ``local Dask cluster (TLS): 2 worker process(es) x 1 thread(s)`` or ``scheduler tls://...: 8 worker(s)``.
    dashboard : str or None
        The dashboard's address, when the scheduler serves one.
    threads : int or None
        Threads for each task (None: decided on each worker, :func:`qmri.cohort.tasks.worker_threads`).
    """

    client: object
    description: str
    dashboard: str | None
    threads: int | None


def _dashboard(client) -> str | None:
    if importlib.util.find_spec("bokeh") is None:  # the scheduler's web server then serves no dashboard
        return None
    try:
        services = client.scheduler_info().get("services", {})
    except Exception:  # noqa: BLE001 - an address we only report
        return None
    return client.dashboard_link if "dashboard" in services else None


@contextlib.contextmanager
def connect(*, scheduler: str | None = None, workers: int | None = None, threads: int | None = None,
            n_tasks: int = 1, client=None):
    """A Dask client for the run (closed, with the local cluster it started, on exit).

    Parameters
    ----------
    scheduler : str, optional
        Address of an existing scheduler (``tls://HOST:PORT``, credentials from Dask's configuration,
        or ``tcp://HOST:PORT``); default: start a local cluster with TLS credentials of its own.
    workers : int, optional
        Worker processes of the local cluster (default: one per :data:`CORES_PER_WORKER` cores, at most
        one per task).
    threads : int, optional
        Threads per task (default: the cores divided among the workers).
    n_tasks : int
        Tasks to run (caps the default number of local workers).
    client : distributed.Client, optional
        A client already connected (used as it is, and not closed).

    Yields
    ------
    Engine

    Raises
    ------
    QMRIInputError
        ``workers`` not positive; ``threads`` not from 1 to the cores (:func:`qmri.threads.check_threads`;
        local cluster only: a remote worker checks its own cores); ``workers`` with ``scheduler``; an address
        that is not ``tls://`` or ``tcp://``; ``tls://`` without TLS credentials in Dask's configuration;
        no scheduler at the address (or the credentials refused).
    """
    if workers is not None and workers < 1:
        raise QMRIInputError(f"--workers must be at least 1, got {workers}")
    if threads is not None:
        if scheduler is None and client is None:
            check_threads(threads)
        elif int(threads) != threads or threads < 1:
            raise QMRIInputError(f"--threads must be a positive integer, got {threads}")
    if client is not None:
        yield Engine(client, f"Dask client {client.scheduler.address}", _dashboard(client), threads)
        return
    from distributed import Client, LocalCluster
    from distributed.security import Security

    if scheduler is not None:
        if workers is not None:
            raise QMRIInputError("--workers starts a local cluster; with --scheduler the cluster has its own workers")
        scheme = scheduler.partition("://")[0] if "://" in scheduler else ""
        if scheme not in ("tls", "tcp"):
            raise QMRIInputError(f"--scheduler {scheduler}: give tls://HOST:PORT (or tcp://HOST:PORT)")
        security = Security()  # Dask's configuration: distributed.comm.tls.*
        if scheme == "tls" and not (security.tls_ca_file and security.tls_client_cert):
            raise QMRIInputError(f"--scheduler {scheduler}: no TLS credentials; set distributed.comm.tls.ca-file, "
                                 "distributed.comm.tls.client.cert and distributed.comm.tls.client.key in the Dask "
                                 "configuration (README: Cohorts, Engine)")
        try:
            remote = Client(scheduler, timeout="20s", security=security)
        except (OSError, TimeoutError, ValueError, TypeError, RuntimeError) as exc:
            raise QMRIInputError(f"--scheduler {scheduler}: cannot connect ({str(exc).splitlines()[0]})") from None
        try:
            n = len(remote.scheduler_info().get("workers", {}))
            how = "" if scheme == "tls" else " (plain TCP: unauthenticated)"
            yield Engine(remote, f"scheduler {scheduler}: {n} worker(s){how}", _dashboard(remote), threads)
        finally:
            remote.close()
        return
    cores = available()
    n = workers or max(1, min(cores // CORES_PER_WORKER, n_tasks))
    per_task = threads or max(1, cores // n)
    # everything on the loopback interface, the web server (dashboard) on a free port; TLS with this
    # run's own credentials, so that no other account of the machine can connect
    security = Security.temporary()
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", protocol="tls://",
                           security=security, dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
    try:
        local = Client(cluster, security=security)
        try:
            yield Engine(local, f"local Dask cluster (TLS): {n} worker process(es) x {per_task} thread(s)",
                         _dashboard(local), per_task)
        finally:
            local.close()
    finally:
        cluster.close()


def run_tasks(engine: Engine, tasks: list, *, progress: bool = False, desc: str = "tasks") -> list:
    """Run ``tasks`` (:mod:`qmri.cohort.tasks`) on the engine; their results in the order of ``tasks``.

    Every task is one Dask task calling :func:`qmri.cohort.tasks.execute`, which reports a task's own
    failure as a failed result; a task Dask itself could not run (its worker died more often than the
    scheduler allows, ``KilledWorker``) is reported as failed too. A progress bar (tqdm, on standard
    error) counts finished tasks.
    """
    from distributed import as_completed

    if not tasks:
        return []
    tasks = [dataclasses.replace(t, threads=t.threads or engine.threads) for t in tasks]
    run = uuid.uuid4().hex[:8]
    keys = [f"qmri-{t.label}-{run}" for t in tasks]
    futures = engine.client.map(execute, tasks, key=keys, pure=False)
    by_key = dict(zip(keys, tasks))
    results = {}
    with tqdm(total=len(tasks), desc=desc, unit="task", disable=not progress, leave=True) as bar:
        for fut in as_completed(futures):
            task = by_key[fut.key]
            if fut.status == "finished":
                results[fut.key] = fut.result()
            else:
                exc = fut.exception()
                why = "its worker died" if type(exc).__name__ == "KilledWorker" else type(exc).__name__
                results[fut.key] = TaskResult(task.participant, task.step, FAILED, float("nan"),
                                              f"{why}: {exc}".splitlines()[0])
            bar.update(1)
            fut.release()
    return [results[k] for k in keys]
