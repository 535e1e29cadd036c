"""The daemon never stops for good on a transient fault, and never stops silently.

Real daemon processes: worker processes that cannot start for a while, then for good;
SIGHUP; a scan thread that dies of running out of file descriptors. In-process: the
revival of a dead HTTP server thread and what health says meanwhile.
"""

from __future__ import annotations

import os
import resource
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import structlog

from tiffsink.service.health import Health
from tiffsink.service.keepalive import HTTP_THREAD, KeepAlive
from tiffsink.service.threadwatch import ThreadDeaths
from tiffsink.testing import faults

from conftest import wait_for
from daemon_harness import DaemonProc, source_array, tiff_bytes

METRICS = {"listen": "127.0.0.1:0"}


def children(pid: int) -> list[int]:
    pids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            pids += [int(p) for p in f.read().split()]
    return pids


def workers_of(d: DaemonProc) -> list[int]:
    """PIDs of the daemon's worker processes: the children of its fork server."""
    assert d.proc is not None
    servers = [
        p for p in children(d.proc.pid) if b"forkserver" in Path(f"/proc/{p}/cmdline").read_bytes()
    ]
    return [w for s in servers for w in children(s)]


def healthz(d: DaemonProc) -> tuple[int, str]:
    addr = wait_for(lambda: d.events("metrics.listening"), 30, "metrics.listening")[-1]
    try:
        with urllib.request.urlopen(f"http://{addr['address']}/healthz", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def drop(d: DaemonProc, names: list[str], seed: int = 0) -> list[Path]:
    paths = [d.inbox / n for n in names]
    for i, p in enumerate(paths):
        p.write_bytes(tiff_bytes(source_array(seed + i)))
    return paths


def test_replacement_worker_that_fails_to_start_is_retried_until_it_starts(
    tmp_path: Path,
) -> None:
    """A replacement worker dying before READY is logged, turns /healthz 503 and is tried
    again with backoff; the daemon keeps ingesting and is healthy once it starts."""
    flag = tmp_path / "workers-cannot-start"
    env = faults.spec(worker_start=str(flag))
    d = DaemonProc(tmp_path, env=env, metrics=METRICS).start()
    drop(d, ["a0.tif", "a1.tif"])
    d.wait_rows(2)
    flag.touch()
    victim = workers_of(d)[0]
    os.kill(victim, signal.SIGKILL)
    ev = wait_for(lambda: d.events("worker.start_failed"), 60, "worker.start_failed")
    assert ev[0]["level"] == "error" and "before it was ready" in ev[0]["detail"]
    code, text = healthz(d)
    assert code == 503 and "failed to start" in text
    drop(d, ["b0.tif", "b1.tif", "b2.tif"], seed=10)
    d.wait_rows(5)  # the other worker goes on meanwhile
    flag.unlink()
    wait_for(lambda: d.events("worker.start_recovered"), 90, "worker.start_recovered")
    wait_for(lambda: healthz(d)[0] == 200, 30, "healthy again")
    assert len(workers_of(d)) == 2
    assert d.stop() == 0


def test_workers_that_never_start_end_the_daemon_with_75_not_2(tmp_path: Path) -> None:
    """Past the retry bound the daemon exits 75, which systemd restarts (2 is only for
    config errors), after logging each failed start and why it stops."""
    env = faults.spec(worker_start="exit", start_give_up_s="1")
    d = DaemonProc(tmp_path, env=env).start()
    drop(d, ["a0.tif"])
    assert d.wait(60) == 75
    assert len(d.events("worker.start_failed")) >= 2
    [ev] = d.events("daemon.exiting")
    assert "could not start" in ev["detail"] and ev["level"] == "error"
    assert d.failures() == {}  # no file charged for it


def test_sighup_drains_then_exits_75_and_the_restart_goes_on(tmp_path: Path) -> None:
    """SIGHUP is logged, the batches in flight are committed, and the exit status (75)
    is one systemd restarts (a death by SIGHUP would count as clean and stay down)."""
    d = DaemonProc(tmp_path).start()
    first = drop(d, [f"a{i}.tif" for i in range(4)])
    d.wait_rows(4)
    d.signal(signal.SIGHUP)
    assert d.wait(60) == 75
    [ev] = d.events("daemon.stopping")
    assert ev["signal"] == "SIGHUP" and "exit 75" in ev["then"]
    assert d.events("daemon.stopped")[0]["exit_status"] == 75
    later = drop(d, ["b0.tif", "b1.tif"], seed=10)
    d.start()
    rows = d.wait_rows(6)
    assert sorted(rows) == sorted(map(str, first + later))
    assert d.stop() == 0


def test_scan_thread_dying_of_emfile_is_logged_and_rescanned(tmp_path: Path) -> None:
    """A new folder's scan dies when no file descriptor is left (sqlite: unable to open
    database file): `thread.died` in JSON, a retried full scan, and its files ingested
    once descriptors are back."""
    d = DaemonProc(tmp_path).start()
    drop(d, ["a0.tif"])
    d.wait_rows(1)
    assert d.proc is not None
    pid = d.proc.pid
    before = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    staged = tmp_path / "staged"
    staged.mkdir()
    for i in range(3):
        (staged / f"s{i}.tif").write_bytes(tiff_bytes(source_array(20 + i)))
    in_use = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    lowest_free = min(set(range(len(in_use) + 1)) - in_use)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free, before[1]))
    try:
        os.rename(staged, d.inbox / "sub")  # only a scan finds files moved in inside a folder

        def scan_died() -> list[dict[str, Any]]:
            return [e for e in d.events("thread.died") if e["thread"].startswith("tiffsink-scan")]

        died = wait_for(scan_died, 30, "a scan thread's thread.died")
        assert "unable to open database file" in died[0]["error"]
        assert "Traceback" in died[0]["traceback"]
        wait_for(lambda: d.events("scan.retry"), 30, "scan.retry")
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, before)
    rows = d.wait_rows(4, timeout=90)
    assert sorted(rows)[1:] == sorted(str(d.inbox / "sub" / f"s{i}.tif") for i in range(3))
    assert d.stop() == 0


class _Server:
    """A server factory whose first restart fails (the port was taken meanwhile)."""

    made = 0

    def __init__(self) -> None:
        _Server.made += 1
        if _Server.made == 2:
            raise OSError(98, "Address already in use")

    def close(self) -> None:
        pass


class _Alive:
    def alive(self) -> bool:
        return True


class _Scanner:
    def request_full(self) -> None:
        pass


def test_dead_http_thread_is_logged_reported_unhealthy_and_revived() -> None:
    """The HTTP server's thread dying logs `thread.died`; health is unhealthy (the
    watchdog still fed) until a new server starts, tried again with backoff."""
    health = Health()
    events: list[dict[str, Any]] = []

    def grab(_: Any, __: str, ev: dict[str, Any]) -> dict[str, Any]:
        events.append(dict(ev))
        raise structlog.DropEvent

    structlog.configure(processors=[grab])
    try:
        with ThreadDeaths() as deaths:
            keep = KeepAlive(health, _Alive(), _Scanner(), deaths, _Server)  # type: ignore[arg-type]

            def boom() -> None:
                raise OSError(24, "Too many open files")

            t = threading.Thread(target=boom, name=HTTP_THREAD)
            t.start()
            t.join()
            now = time.monotonic()
            keep.tend(now, None)  # the first restart fails
            assert "HTTP server's thread died" in (health.problem() or "")
            assert health.progressing()
            keep.tend(now + 0.5, None)  # not due yet
            assert _Server.made == 2
            keep.tend(now + 1.0, None)
            assert _Server.made == 3 and health.problem() is None
    finally:
        structlog.reset_defaults()
    names = [e["event"] for e in events]
    [died] = [e for e in events if e["event"] == "thread.died"]
    assert died["thread"] == HTTP_THREAD and "Too many open files" in died["error"]
    assert names.count("metrics.restart_failed") == 1 and names.count("metrics.restarted") == 1


@pytest.mark.parametrize("unit", ["tiffsink.service", "tiffsink@.service"])
def test_shipped_units_restart_every_exit_but_config_errors(unit: str) -> None:
    """Restart=on-failure restarts 1, 75 and deaths by signal; only 2 is held back."""
    text = (Path(__file__).resolve().parents[1] / "systemd" / unit).read_text()
    lines = {ln.split("=", 1)[0]: ln.split("=", 1)[1] for ln in text.splitlines() if "=" in ln}
    assert lines["Restart"] == "on-failure"
    assert lines["RestartPreventExitStatus"] == "2"
