"""The service loop's cures for what dies under it, each with backoff and a health fault.

- The watchdog observer dies: `events.lost` (error), a new observer and a full rescan.
- A scan thread dies (an index it cannot open, a folder it cannot list): `thread.died`,
  and a full rescan after a backoff; healthy again once a full scan completes.
- The HTTP server's thread dies: `thread.died`, and a new server on the same address.
- Any other thread dies (the observer's helpers): treated as lost events, as above.
- Worker processes that fail to start: the pool retries them (pipeline/starts.py); here
  only its problem is shown in health.
Each cure that fails again waits longer (`Backoff`), so a lasting fault is a log line per
try and an unhealthy /healthz, never a busy loop. Runs in the loop's thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import structlog

from ..feed.scan import Scanner
from ..feed.watch import Watcher
from .health import Health
from .threadwatch import Backoff, ThreadDeaths

log = structlog.get_logger("tiffsink")

SCAN_THREAD = "tiffsink-scan-"
HTTP_THREAD = "tiffsink-metrics"
FULL_SCANS = ("start", "reconcile")  # a scan of the whole inbox: what a lost scan missed


class Server(Protocol):
    def close(self) -> None: ...


class KeepAlive:
    """Revives the observer, scans and the HTTP server; mirrors each fault into health."""

    def __init__(
        self,
        health: Health,
        watcher: Watcher,
        scanner: Scanner,
        deaths: ThreadDeaths,
        new_server: Callable[[], Server] | None = None,
    ) -> None:
        self.health, self.watcher, self.scanner, self.deaths = health, watcher, scanner, deaths
        self.new_server = new_server
        self.server: Server | None = new_server() if new_server is not None else None
        self.observer = Backoff()
        self.scan = Backoff()
        self.http = Backoff()
        self._rescan_due = False
        self._server_due = False
        self._workers: str | None = None

    def tend(self, now: float, workers_problem: str | None) -> None:
        """One look per loop step: a few attribute reads when all is well."""
        if workers_problem != self._workers:
            self._workers = workers_problem
            self.health.set_fault("workers", workers_problem)
        for name, error in self.deaths.take():
            self._died(name, error, now)
        if not self.watcher.alive() and self.observer.due(now):
            self._restart_observer(now)
        if self._rescan_due and self.scan.due(now):
            self._rescan_due = False
            self.scanner.request_full()
        if self._server_due and self.http.due(now):
            self._restart_server(now)

    def _died(self, name: str, error: str, now: float) -> None:
        if name.startswith(SCAN_THREAD):
            delay = self.scan.failed(now)
            self.health.set_fault("scan", f"a scan thread died ({error}); rescanning")
            self._rescan_due = True
            log.warning("scan.retry", thread=name, in_s=delay, action="full rescan")
        elif name == HTTP_THREAD and self.new_server is not None:
            self.health.set_fault("http", f"the HTTP server's thread died ({error})")
            self._server_due = True
        else:
            # Possibly one of the observer's threads: events may be lost from here on.
            self.health.set_fault("events", f"thread {name} died ({error}); rescanning")
            self._restart_observer(now)

    def _restart_observer(self, now: float) -> None:
        """A new observer, then a full rescan for what the old one missed."""
        delay = self.observer.failed(now)
        log.error(
            "events.lost",
            reason="observer thread died",
            action=f"restart+rescan (next restart no sooner than {delay:g} s)",
        )
        try:
            self.watcher.restart()
        except Exception as e:  # inotify limits, no descriptors: try again later
            log.error("watch.restart_failed", detail=f"{type(e).__name__}: {e}")
        self.scanner.request_full()

    def _restart_server(self, now: float) -> None:
        assert self.new_server is not None
        if self.server is not None:
            try:
                self.server.close()
            except Exception as e:
                log.warning("metrics.close_failed", detail=f"{type(e).__name__}: {e}")
            self.server = None
        try:
            self.server = self.new_server()
        except Exception as e:  # e.g. the port was taken meanwhile: try again later
            delay = self.http.failed(now)
            log.error("metrics.restart_failed", detail=str(e), retry_in_s=delay)
            return
        self._server_due = False
        self.http.succeeded()
        self.health.set_fault("http", None)
        log.info("metrics.restarted")

    def scan_done(self, why: str) -> None:
        """A scan finished: after a full one, nothing a dead scan or observer missed remains."""
        if why in FULL_SCANS and not self._rescan_due:
            self.scan.succeeded()
            self.health.set_fault("scan", None)
            self.health.set_fault("events", None)
            if self.watcher.alive():
                self.observer.succeeded()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
