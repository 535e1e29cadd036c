"""Reaching the Dask cluster, and refusing it before any work when it cannot do the job.

`scheduler = "local"` starts a `distributed.LocalCluster` of worker processes on this
machine; `"tcp://HOST:PORT"` joins an existing scheduler (`dask scheduler` with `dask
worker`s, dask-jobqueue, dask-kubernetes). Every worker must import tiffsink at the
client's version and be able to write into the dataset folder (a shared filesystem):
both are checked with `client.run` on every worker, and a failure names the workers.
"""

from __future__ import annotations

import builtins
import contextlib
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

from ..config import Config
from ..errors import ClusterError
from ..version import version

log = structlog.get_logger("tiffsink")


def _probe(dataset_tmp: str) -> dict[str, str]:
    """Runs on each worker: its tiffsink version, host, and whether it can write there."""
    import os
    import socket
    import uuid

    try:
        import tiffsink

        version = str(tiffsink.__version__)
    except Exception as e:
        version = f"not importable ({type(e).__name__}: {e})"
    try:
        probe = os.path.join(dataset_tmp, f".probe-{uuid.uuid4().hex}")
        with open(probe, "wb") as fh:
            fh.write(b"x")
        os.unlink(probe)
        write_error = ""
    except OSError as e:
        write_error = f"{type(e).__name__}: {e}"
    return {"version": version, "host": socket.gethostname(), "write_error": write_error}


def check_workers(client: Any, dataset_tmp: Path) -> int:
    """Refuse workers that cannot take part; returns how many there are."""
    # A copy without a module, so it is pickled by value: a worker with another tiffsink
    # (or none) still runs it and says so.
    probe = types.FunctionType(_probe.__code__, {"__builtins__": builtins}, "tiffsink_probe")
    found: dict[str, dict[str, str]] = client.run(probe, str(dataset_tmp))
    if not found:
        raise ClusterError(None, "the scheduler has no workers")
    info = client.scheduler_info().get("workers", {})
    label = {w: f"worker {info.get(w, {}).get('name', '?')} ({w})" for w in found}
    wrong = {w: r["version"] for w, r in found.items() if r["version"] != version()}
    if wrong:
        names = ", ".join(f"{label[w]} has {v}" for w, v in sorted(wrong.items()))
        raise ClusterError(
            None,
            f"every worker needs tiffsink {version()}, as the client: {names}; install "
            "the same version into the workers' environment",
        )
    unwritable = {w: r for w, r in found.items() if r["write_error"]}
    if unwritable:
        names = ", ".join(
            f"{label[w]} on {r['host']}: {r['write_error']}" for w, r in sorted(unwritable.items())
        )
        raise ClusterError(
            dataset_tmp.parent,
            "the dataset folder must be on a filesystem every worker can write (the same "
            f"path on every host); these workers cannot: {names}",
        )
    return len(found)


@contextlib.contextmanager
def connect(config: Config, scheduler: str) -> Iterator[Any]:
    """A distributed.Client for `scheduler` ("local" or an address), closed afterwards."""
    from distributed import Client, LocalCluster

    if scheduler == "local":
        n = config.workers.resolved_count()
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
        )
        log.info("cluster.local", workers=n)
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as e:
        raise ClusterError(None, f"cannot reach the scheduler at {scheduler}: {e}") from e
    try:
        yield client
    finally:
        client.close()
