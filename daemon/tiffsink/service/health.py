"""What the daemon knows about itself: counters, rates, and whether it is healthy.

Only the supervisor updates these, from its own thread; the HTTP server thread only
reads. "Progressing" means: the observer is alive, and either nothing is waiting or a
commit happened recently; that is what systemd's watchdog and /healthz both rely on, so a
wedged pipeline gets restarted.
"""

from __future__ import annotations

import functools
import shutil
import socket
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any, Protocol

from ..dataset.formats.npy.header import HEADER_BYTES
from ..feed.report import CommitInfo
from ..version import version
from .fds import FdWatch
from .metrics import Metrics

DISK_FULL = "dataset disk is full: intake paused until space returns"


class Observed(Protocol):
    """The observer, as health sees it."""

    def alive(self) -> bool: ...


class Busy(Protocol):
    """The pipeline, as health sees it."""

    def idle(self) -> bool: ...

    def disk_full(self) -> bool: ...


class Publishing(Protocol):
    """What health reads of the daemon's publisher (`service/publishing.py`)."""

    def problem(self) -> str | None: ...

    def status(self) -> dict[str, Any]: ...


def _status_number(pub: Publishing, key: str) -> float:
    return float(pub.status().get(key) or 0)


class Health:
    """Counters and health of one daemon; updated by the main loop, read by HTTP."""

    def __init__(
        self, row_bytes: int = 0, stall_s: float = 120.0, dataset: Path | None = None
    ) -> None:
        self.started = time.time()
        self.dataset = dataset  # for disk free in /status
        self.host = socket.gethostname()
        self.row_bytes = row_bytes
        self.stall_s = stall_s
        self.rows = 0
        self.ingested_total = 0
        self.failed: Counter[str] = Counter()
        self.pending = 0
        self.last_commit = 0.0
        self.last_commit_mono = time.monotonic()
        self._recent: deque[tuple[float, int]] = deque(maxlen=4096)
        self.watcher: Observed | None = None
        self.pipeline: Busy | None = None
        self.metrics = Metrics()
        self.fds = FdWatch()  # counted when /metrics or health asks, at most once a second
        self.metrics.open_fds.set_function(self.fds.count)
        self.metrics.max_fds.set_function(self.fds.limit)
        self.faults: dict[str, str] = {}  # what the loop is curing: set_fault
        self.publisher: Publishing | None = None

    @property
    def bytes(self) -> int:
        return HEADER_BYTES + self.rows * self.row_bytes

    # -- updates, from the supervisor thread ----------------------------------------
    def start(self, watcher: Observed, pipeline: Busy, rows: int) -> None:
        self.watcher, self.pipeline = watcher, pipeline
        self._set_rows(rows)

    def _set_rows(self, rows: int) -> None:
        self.rows = rows
        self.metrics.rows.set(rows)
        self.metrics.bytes.set(self.bytes)

    def set_fault(self, name: str, text: str | None) -> None:
        """A fault the daemon is curing by itself (a worker that will not start, a thread
        that died and is being revived); None clears it. /healthz reports it, but the
        watchdog is still fed: the loop runs, and each cure has its own bound."""
        if text is None:
            self.faults.pop(name, None)
        else:
            self.faults[name] = text

    def attach_publisher(self, pub: Publishing) -> None:
        """Report the daemon's publisher: its problem in /healthz, its state in /status,
        its lag, bytes and errors in /metrics (read when they are rendered)."""
        self.publisher = pub
        m = self.metrics
        for gauge, key in (
            (m.publish_lag_rows, "lag_rows"),
            (m.publish_lag, "lag_s"),
            (m.publish_bytes, "bytes_sent"),
            (m.publish_errors, "errors"),
        ):
            gauge.set_function(functools.partial(_status_number, pub, key))

    def set_pending(self, n: int) -> None:
        self.pending = n
        self.metrics.pending.set(n)

    def ingested(self, latency_s: float) -> None:
        self.ingested_total += 1
        self.metrics.latency.observe(latency_s)

    def failed_file(self, reason: str) -> None:
        """Counted for /metrics (this process's counter); the page's failures come from
        the index, which survives restarts and `tiffsink retry`."""
        self.failed[reason] += 1
        self.metrics.failed.labels(reason=reason).inc()

    def committed(self, info: CommitInfo, rows: int) -> None:
        self.last_commit = time.time()
        self.last_commit_mono = time.monotonic()
        self._recent.append((self.last_commit_mono, info.rows))
        self.metrics.ingested.inc(info.rows)
        self.metrics.batch.observe(info.batch_ms / 1000)
        self.metrics.last.set(self.last_commit)
        self._set_rows(rows)

    # -- reads ------------------------------------------------------------------------
    def rate_per_s(self, window_s: float = 60.0) -> float:
        now = time.monotonic()
        return sum(n for t, n in list(self._recent) if now - t <= window_s) / window_s

    def problem(self) -> str | None:
        """None when healthy, else why not (the text /healthz returns with 503)."""
        if self.watcher is not None and not self.watcher.alive():
            return "observer thread is not running"
        if fd_problem := self.fds.problem():
            return fd_problem
        if self.pipeline is not None and self.pipeline.disk_full():
            return DISK_FULL
        busy = self.pipeline is not None and not self.pipeline.idle()
        if busy and time.monotonic() - self.last_commit_mono > self.stall_s:
            return f"pipeline has work but committed nothing for {self.stall_s:.0f} s"
        if self.publisher is not None and (why := self.publisher.problem()):
            return why
        return next(iter(list(self.faults.values())), None)

    def progressing(self) -> bool:
        """What systemd's watchdog is fed on. A disk-full pause is deliberate (the loop
        runs and resumes by itself), and so are the faults the loop is curing: reported by
        /healthz but not a reason for systemd to kill and restart the service."""
        problem = self.problem()
        publishing = self.publisher is not None and problem == self.publisher.problem()
        return (
            problem is None or problem == DISK_FULL or problem in self.faults.values() or publishing
        )

    def status_line(self) -> str:
        return f"{self.rows} rows, {self.pending} pending, {self.rate_per_s():.1f} rows/s"

    def status(self) -> dict[str, Any]:
        problem = self.problem()
        return {
            "rows": self.rows,
            "bytes": self.bytes,
            "pending": self.pending,
            "ingested_files": self.ingested_total,
            "last_commit": self.last_commit or None,
            "rows_per_s_1m": round(self.rate_per_s(), 3),
            "healthy": problem is None,
            "problem": problem,
            "dataset": str(self.dataset) if self.dataset is not None else None,
            "host": self.host,
            "started": self.started,
            "uptime_s": round(time.time() - self.started, 1),
            "version": version(),
            "disk": self._disk(),
            "publish": self.publisher.status() if self.publisher is not None else None,
        }

    def _disk(self) -> dict[str, Any] | None:
        """Free space on the dataset's filesystem; `low` below 10% or 5 GB."""
        if self.dataset is None:
            return None
        try:
            du = shutil.disk_usage(self.dataset)
        except OSError:
            return None
        low = du.free < 0.10 * du.total or du.free < 5e9
        return {"free": du.free, "total": du.total, "low": low}
