"""The local Dask cluster of qmri cohort accepts only its own client: TLS with credentials made for the run.

Any process of the machine can reach the scheduler's loopback port; without the run's certificate it must
not get a connection (a Dask client can run any function on the workers). Loopback only, a few seconds.
"""

import operator
import socket
import ssl
import tempfile
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")
pytest.importorskip("cryptography")

from distributed.security import Security  # noqa: E402

from qmri.cohort.engine import connect  # noqa: E402
from qmri.errors import QMRIInputError  # noqa: E402

TIMEOUT = 5.0  # seconds: a refused connection ends well within it


@pytest.fixture(scope="module")
def engine():
    """The cohort's own engine, started as ``qmri cohort`` starts it (one worker process)."""
    with connect(workers=1) as e:
        yield e


def _host_port(address: str):
    host, port = address.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def _tls_answer(address: str, ca: str, cert: str | None = None, key: str | None = None) -> str:
    """Open a TLS connection that trusts the run's CA (so the server is verified), presenting ``cert``
    (or none), send a few bytes and read: 'refused' (alert, reset or closed) or 'open' (the server
    waits for more: the connection was accepted)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca)
    ctx.check_hostname = False
    if cert is not None:
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "c.pem").write_text(cert)
            (Path(d) / "k.pem").write_text(key)
            ctx.load_cert_chain(Path(d) / "c.pem", Path(d) / "k.pem")
    with socket.create_connection(_host_port(address), timeout=TIMEOUT) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(b"\0" * 8)
                return "open" if tls.recv(1) else "refused"
        except (ssl.SSLError, ConnectionError):
            return "refused"
        except socket.timeout:
            return "open"


def test_the_local_cluster_speaks_tls_and_its_own_client_works(engine):
    address = engine.client.scheduler.address
    assert address.startswith("tls://127.0.0.1:")
    assert engine.client.submit(operator.add, 1, 2).result(timeout=60) == 3
    assert "TLS" in engine.description


def _connect_client(address: str, security=None) -> None:
    """Connect a Dask client to ``address`` and close it again, on an event loop of this thread.

    An asynchronous client: a synchronous one starts an IO-loop thread of its own, and Dask gives that
    thread 10 s to start (``LoopRunner``), which a loaded machine can exceed; the attempt here is bounded
    by ``TIMEOUT`` (Dask's connect time-out) and 60 s in all."""
    import asyncio

    async def attempt():
        client = distributed.Client(address, asynchronous=True, timeout=f"{TIMEOUT:g}s", security=security)
        try:
            await client
        finally:
            await client.close()

    async def bounded():
        try:
            await asyncio.wait_for(attempt(), 60)
        except TimeoutError:  # (an OSError): no answer at all is not a refusal
            raise AssertionError("the connection attempt had no answer within 60 s") from None

    asyncio.run(bounded())


def test_a_client_without_the_run_credentials_is_refused(engine):
    address = engine.client.scheduler.address
    _connect_client(address, engine.client.security)  # the check can tell: the run's credentials connect
    with pytest.raises((OSError, TypeError)):  # no certificate at all: Dask cannot even open TLS
        _connect_client(address)
    with pytest.raises(OSError):  # a certificate of its own: not the run's
        _connect_client(address, Security.temporary())


def test_the_scheduler_itself_requires_the_run_certificate(engine):
    """Server side: a client that trusts the run's CA but presents no certificate, or another one,
    is refused by the scheduler; the run's certificate is accepted (the check can tell them apart)."""
    sec = engine.client.security
    address = engine.client.scheduler.address
    assert _tls_answer(address, sec.tls_ca_file) == "refused"
    other = Security.temporary()
    assert _tls_answer(address, sec.tls_ca_file, other.tls_client_cert, other.tls_client_key) == "refused"
    assert _tls_answer(address, sec.tls_ca_file, sec.tls_client_cert, sec.tls_client_key) == "open"


def test_a_plain_tcp_connection_to_the_scheduler_port_is_refused(engine):
    address = engine.client.scheduler.address
    with pytest.raises(OSError):
        _connect_client(address.replace("tls://", "tcp://"))
    with socket.create_connection(_host_port(address), timeout=TIMEOUT) as raw:
        raw.sendall(b"\0" * 64)  # not a TLS ClientHello: the server closes the connection (a timeout fails)
        try:
            while raw.recv(4096):  # at most a TLS alert
                pass
        except ConnectionError:
            pass


def test_a_tls_scheduler_without_configured_credentials_is_a_one_line_error():
    import dask

    with dask.config.set({"distributed.comm.tls.ca-file": None, "distributed.comm.tls.client.cert": None,
                          "distributed.comm.tls.client.key": None}):
        with pytest.raises(QMRIInputError, match="no TLS credentials; set distributed.comm.tls.ca-file"):
            with connect(scheduler="tls://127.0.0.1:1"):
                pass
    with pytest.raises(QMRIInputError, match="give tls://HOST:PORT"):
        with connect(scheduler="127.0.0.1:8786"):
            pass


def test_a_tls_scheduler_is_reached_with_the_credentials_of_the_dask_configuration(tmp_path):
    """An external TLS cluster (as ``dask scheduler --tls-...`` starts one) and qmri's client configured
    through Dask's own configuration keys, as the README says."""
    import dask

    sec = Security.temporary()
    ca, cert, key = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.write_text(sec.tls_ca_file)
    cert.write_text(sec.tls_client_cert)
    key.write_text(sec.tls_client_key)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tls://",
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0", security=sec) as cluster:
        with dask.config.set({"distributed.comm.tls.ca-file": str(ca), "distributed.comm.tls.client.cert": str(cert),
                              "distributed.comm.tls.client.key": str(key)}):
            with connect(scheduler=cluster.scheduler_address) as e:
                assert e.client.submit(operator.mul, 6, 7).result(timeout=60) == 42
                assert "unauthenticated" not in e.description
