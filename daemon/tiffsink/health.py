"""What the daemon knows about itself: counters, Prometheus metrics, /healthz and /status.

Only the supervisor updates these (workers never touch metrics), from its own thread;
the HTTP server thread only reads. "Progressing" means: the observer is alive, and
either nothing is waiting or a commit happened recently; that is what systemd's
watchdog and /healthz both rely on, so a wedged pipeline gets restarted.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry, Gauge, Histogram, Info
from prometheus_client import Counter as PCounter
from prometheus_client.exposition import generate_latest

from . import __version__

if TYPE_CHECKING:
    from .config import Config
    from .pipeline import CommitInfo, Pipeline
    from .store import DatasetWriter
    from .watch import Watcher

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900)


class Health:
    def __init__(self) -> None:
        self.started = time.time()
        self.rows = 0
        self.bytes = 0
        self.ingested_total = 0
        self.failed: Counter[str] = Counter()
        self.pending = 0
        self.last_commit = 0.0
        self.last_commit_mono = time.monotonic()
        self.scans_done = 0
        self._recent: deque[tuple[float, int]] = deque(maxlen=4096)
        self.watcher: Watcher | None = None
        self.pipeline: Pipeline | None = None
        self.stall_s = 120.0
        self.reg = CollectorRegistry()
        self.m_ingested = PCounter("tiffsink_images_ingested", "Rows committed", registry=self.reg)
        self.m_failed = PCounter(
            "tiffsink_files_failed", "Files recorded as failed", ["reason"], registry=self.reg
        )
        self.m_batch = Histogram(
            "tiffsink_batch_duration_seconds",
            "First file dispatched to commit, per batch",
            registry=self.reg,
        )
        self.m_latency = Histogram(
            "tiffsink_arrival_to_commit_seconds",
            "File seen ready to its row committed",
            buckets=LATENCY_BUCKETS,
            registry=self.reg,
        )
        self.m_pending = Gauge(
            "tiffsink_pending_files", "Files waiting or decoding", registry=self.reg
        )
        self.m_rows = Gauge("tiffsink_dataset_rows", "Committed rows", registry=self.reg)
        self.m_bytes = Gauge("tiffsink_dataset_bytes", "Size of images.npy", registry=self.reg)
        self.m_last = Gauge(
            "tiffsink_last_commit_timestamp_seconds", "Unix time of last commit", registry=self.reg
        )
        Info("tiffsink_build", "tiffsink version", registry=self.reg).info({"version": __version__})
        self._server: ThreadingHTTPServer | None = None

    # -- updates, from the supervisor thread ----------------------------------------
    def start(self, watcher: Watcher, pipeline: Pipeline, cfg: Config) -> None:
        self.watcher, self.pipeline = watcher, pipeline
        self.stall_s = max(120.0, 4 * cfg.workers.timeout_s)
        w = pipeline.writer
        self.rows = w.committed
        self.bytes = 4096 + w.committed * w.row_bytes
        self.m_rows.set(self.rows)
        self.m_bytes.set(self.bytes)
        if cfg.metrics.listen:
            self.serve(cfg.metrics.listen)

    def ingested(self, latency_s: float) -> None:
        self.ingested_total += 1
        self.m_latency.observe(latency_s)

    def failed_file(self, reason: str) -> None:
        self.failed[reason] += 1
        self.m_failed.labels(reason=reason).inc()

    def scanned(self) -> None:
        self.scans_done += 1

    def committed(self, info: CommitInfo, writer: DatasetWriter) -> None:
        self.rows = writer.committed
        self.last_commit = time.time()
        self.last_commit_mono = time.monotonic()
        self._recent.append((self.last_commit_mono, info.rows))
        self.m_ingested.inc(info.rows)
        self.m_batch.observe(info.batch_ms / 1000)
        self.m_rows.set(self.rows)
        self.bytes = 4096 + self.rows * writer.row_bytes
        self.m_bytes.set(self.bytes)
        self.m_last.set(self.last_commit)

    # -- reads ------------------------------------------------------------------------
    def rate_per_s(self, window_s: float = 60.0) -> float:
        now = time.monotonic()
        return sum(n for t, n in self._recent if now - t <= window_s) / window_s

    def problem(self) -> str | None:
        """None when healthy, else why not (the text /healthz returns with 503)."""
        if self.watcher is not None and not self.watcher.alive():
            return "observer thread is not running"
        if self.pipeline is not None and self.pipeline.full_since is not None:
            return "dataset disk is full: intake paused until space returns"
        busy = self.pipeline is not None and not self.pipeline.idle()
        if busy and time.monotonic() - self.last_commit_mono > self.stall_s:
            return f"pipeline has work but committed nothing for {self.stall_s:.0f} s"
        return None

    def progressing(self) -> bool:
        """What systemd's watchdog is fed on. A disk-full pause is deliberate (the loop
        runs and resumes by itself), so it is reported by /healthz but not a reason for
        systemd to kill and restart the service."""
        p = self.problem()
        return p is None or p.startswith("dataset disk is full")

    def status_line(self) -> str:
        return f"{self.rows} rows, {self.pending} pending, {self.rate_per_s():.1f} rows/s"

    def status(self) -> dict[str, Any]:
        self.m_pending.set(self.pending)
        return {
            "rows": self.rows,
            "bytes": self.bytes,
            "pending": self.pending,
            "ingested_files": self.ingested_total,
            "failed": dict(self.failed),
            "last_commit": self.last_commit or None,
            "rows_per_s_1m": round(self.rate_per_s(), 3),
            "healthy": self.problem() is None,
            "problem": self.problem(),
            "started": self.started,
            "version": __version__,
        }

    # -- HTTP -------------------------------------------------------------------------
    def serve(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    health.m_pending.set(health.pending)
                    self._send(200, generate_latest(health.reg), "text/plain; version=0.0.4")
                elif path == "/healthz":
                    p = health.problem()
                    self._send(503 if p else 200, (p or "ok").encode() + b"\n", "text/plain")
                elif path == "/status":
                    self._send(200, json.dumps(health.status()).encode(), "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host.strip("[]"), int(port)), Handler)
        bound_host, bound_port = self._server.server_address[:2]
        structlog.get_logger("tiffsink").info(
            "metrics.listening",
            address=f"{bound_host!s}:{bound_port}",
            paths=["/metrics", "/healthz", "/status"],
        )
        threading.Thread(
            target=self._server.serve_forever, daemon=True, name="tiffsink-metrics"
        ).start()

    @property
    def address(self) -> tuple[str, int] | None:
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
