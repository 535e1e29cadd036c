"""The Prometheus metrics of one daemon, in their own registry.

Updated only from the supervisor's thread (through Health); the HTTP thread only renders
them. Workers never touch metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram, Info
from prometheus_client import Counter as PCounter
from prometheus_client.exposition import generate_latest

from ..version import version

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900)


class Metrics:
    """Every metric `/metrics` exports; see docs/operations.md for their meaning."""

    def __init__(self) -> None:
        self.reg = reg = CollectorRegistry()
        self.ingested = PCounter("tiffsink_images_ingested", "Rows committed", registry=reg)
        self.failed = PCounter(
            "tiffsink_files_failed", "Files recorded as failed", ["reason"], registry=reg
        )
        self.batch = Histogram(
            "tiffsink_batch_duration_seconds",
            "First file dispatched to commit, per batch",
            registry=reg,
        )
        self.latency = Histogram(
            "tiffsink_arrival_to_commit_seconds",
            "File seen ready to its row committed",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.pending = Gauge("tiffsink_pending_files", "Files waiting or decoding", registry=reg)
        self.rows = Gauge("tiffsink_dataset_rows", "Committed rows", registry=reg)
        self.bytes = Gauge(
            "tiffsink_dataset_bytes",
            "Size of the committed rows, uncompressed (images.npy's size for npy)",
            registry=reg,
        )
        self.last = Gauge(
            "tiffsink_last_commit_timestamp_seconds", "Unix time of last commit", registry=reg
        )
        self.open_fds = Gauge(
            "tiffsink_open_fds", "Open file descriptors of the daemon process", registry=reg
        )
        self.max_fds = Gauge(
            "tiffsink_max_fds", "Its soft RLIMIT_NOFILE (health fails past 90%)", registry=reg
        )
        self.http_connections = Gauge(
            "tiffsink_http_connections", "Open connections to this HTTP endpoint", registry=reg
        )
        self.publish_lag_rows = Gauge(
            "tiffsink_publish_lag_rows", "Committed rows not yet published", registry=reg
        )
        self.publish_lag = Gauge(
            "tiffsink_publish_lag_seconds",
            "Age of the oldest committed row not yet published",
            registry=reg,
        )
        self.publish_bytes = Gauge(
            "tiffsink_publish_bytes_sent", "Bytes published since start", registry=reg
        )
        self.publish_errors = Gauge(
            "tiffsink_publish_errors", "Publish errors retried since start", registry=reg
        )
        Info("tiffsink_build", "tiffsink version", registry=reg).info({"version": version()})

    def render(self) -> bytes:
        """The text exposition format."""
        return bytes(generate_latest(self.reg))
