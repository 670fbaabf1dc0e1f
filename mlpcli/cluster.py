"""Dask clusters for work that outgrows one process: a local cluster of worker processes, or a client of a
cluster started elsewhere with Dask's own `dask scheduler` and `dask worker` commands.

Local: one worker process per core, one thread each, BLAS single-threaded (Dask's nannies set
OMP/MKL/OPENBLAS_NUM_THREADS=1 before they start a worker); a nanny restarts a worker that dies, and the
scheduler reruns the tasks it lost. Remote: `tcp://HOST:PORT`, or `tls://HOST:PORT` with a CA, a
certificate and a key — given here, or in Dask's config (distributed.comm.tls.*). A scheduler runs
whatever code a client sends, so plain tcp:// is for loopback and private networks you control.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from distributed.diagnostics.plugin import WorkerPlugin

from mlpcli import __version__
from mlpcli.errors import MlpError, one_line
from mlpcli.parallel import undo_malloc_trim

DEFAULT_PORT = 8786          # `dask scheduler`'s
CONNECT_TIMEOUT = "10s"     # a scheduler that is up answers in well under a second


@dataclass
class TLSFiles:
    """PEM files of a TLS connection; None: take it from Dask's config (distributed.comm.tls.*)."""

    ca: str | None = None       # the certificate authority that signed the scheduler's and workers' certificates
    cert: str | None = None     # this client's certificate
    key: str | None = None      # its private key (None: inside `cert`)


@contextmanager
def connect(scheduler: str | None = None, *, workers: int | None = None, tls: TLSFiles | None = None,
            log=lambda line: None) -> Iterator:
    """A `distributed.Client`: of a new local cluster of `workers` processes (default: one per core) when
    `scheduler` is None, else of the cluster at `scheduler` (tcp://HOST:PORT or tls://HOST:PORT)."""
    from distributed import Client, LocalCluster

    if scheduler is None:
        if tls is not None and any(vars(tls).values()):
            raise MlpError("TLS files are for a remote --scheduler tls://HOST:PORT; the local cluster needs none")
        with LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                          dashboard_address=":0", silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
            client.register_plugin(WorkerSetUp())
            yield client
        return
    if workers is not None:
        raise MlpError("--workers sets the size of the local cluster; a remote cluster has the workers "
                       "started with `dask worker`")
    security = _security(scheduler, tls or TLSFiles())
    if not re.search(r":\d+$", scheduler):
        scheduler = f"{scheduler}:{DEFAULT_PORT}"
    try:
        _reachable(scheduler)
        client = Client(scheduler, security=security, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as err:
        hint = "do the TLS files match the cluster's?" if scheduler.startswith("tls") else "does it use tls://?"
        raise MlpError(f"cannot connect to the Dask scheduler at {scheduler}: {one_line(err)} (is `dask scheduler` "
                       f"running there; {hint})") from None
    with client:
        _check_workers(client, scheduler, log)
        client.register_plugin(WorkerSetUp())
        yield client


def _security(scheduler: str, tls: TLSFiles):
    from distributed.security import Security

    scheme = scheduler.partition("://")[0] if "://" in scheduler else ""
    if scheme not in ("tcp", "tls"):
        raise MlpError(f"--scheduler {scheduler}: give tcp://HOST:PORT or tls://HOST:PORT")
    given = any(vars(tls).values())
    if scheme == "tcp":
        if given:
            raise MlpError(f"TLS files given for a plain tcp:// scheduler; connect to tls://{scheduler.partition('://')[2]}")
        return Security()
    for name in ("ca", "cert", "key"):
        path = getattr(tls, name)
        if path is not None and not os.path.isfile(path):
            raise MlpError(f"TLS {name} file not found: {path}")
    if given:
        security = Security(tls_ca_file=tls.ca, tls_client_cert=tls.cert, tls_client_key=tls.key,
                            require_encryption=True)
    else:
        security = Security()           # Dask's config: distributed.comm.tls.ca-file, .client.cert, .client.key
    if not security.tls_ca_file or not security.tls_client_cert:
        raise MlpError(f"{scheduler} needs TLS files: --tls-ca, --tls-cert and --tls-key (or Dask's config "
                       f"distributed.comm.tls.ca-file, .client.cert, .client.key)")
    return security


def _reachable(scheduler: str) -> None:
    """OSError at once if nothing listens at the scheduler's address (Dask would retry until its timeout)."""
    from distributed.comm import parse_address, parse_host_port

    host, port = parse_host_port(parse_address(scheduler)[1], default_port=DEFAULT_PORT)
    socket.create_connection((host, port), timeout=float(CONNECT_TIMEOUT.rstrip("s"))).close()


def _check_workers(client, scheduler: str, log) -> None:
    """MlpError if a connected worker cannot run this mlpcli; a note when no worker is connected yet."""
    try:
        versions = client.run(worker_version)
    except Exception as err:   # a worker that cannot import mlpcli fails to unpickle the function
        raise MlpError(f"a Dask worker of {scheduler} cannot run mlpcli ({one_line(err)}); install mlpcli "
                       f"{__version__} in every worker's environment") from None
    if not versions:
        log(f"no Dask worker is connected to {scheduler} yet; the work waits for `dask worker {scheduler}`")
    wrong = {address: version for address, version in versions.items() if version != __version__}
    if wrong:
        address, version = next(iter(wrong.items()))
        raise MlpError(f"Dask worker {address} runs mlpcli {version}, this is {__version__}; install the same "
                       f"version everywhere (results would differ)")


class WorkerSetUp(WorkerPlugin):
    """Run on every worker of the cluster, those that join or restart later included: undo the malloc
    setting of Dask's nannies that makes numpy's temporaries slow (mlpcli.parallel.undo_malloc_trim)."""

    name = "mlpcli-worker-set-up"

    def setup(self, worker) -> None:
        undo_malloc_trim()


def worker_version() -> str:
    return __version__


def worker_address() -> str:
    """The address of the Dask worker running the current task ("local" outside a worker)."""
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:
        return "local"


class DaskPool:
    """`mlpcli.parallel.ProcessPool.map` on a Dask cluster: each item one task, on any worker, results in
    order. The feature pipeline extracts a large split this way, the shards written by the workers into one
    store, which must therefore be on a file system every worker sees at the same path (a shared cache_dir).
    A task lost with its worker is run again elsewhere (a shard writes the same rows again)."""

    def __init__(self, client) -> None:
        self.client = client

    def map(self, fn, items) -> Iterator:
        items = list(items)
        batch = uuid.uuid4().hex[:8]
        futures = self.client.map(fn, items, key=[f"chunk-{batch}-{i}" for i in range(len(items))])
        try:
            for future in futures:
                yield future.result()
        finally:
            self.client.cancel(futures)
