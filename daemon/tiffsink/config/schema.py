"""The config's shape: one frozen dataclass per `config.toml` section, with defaults.

These objects are built once by `config.parse` and handed to every stage; nothing else
reads the TOML file. Units are in the key names (`max_wait_ms`, `timeout_s`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DTYPES = ("uint8", "uint16", "float32")
INTERPOLATIONS = ("area", "linear", "cubic", "nearest", "lanczos")
FITS = ("stretch", "pad", "crop")
PAGES = ("first", "all")
AFTER_INGEST = ("keep", "move", "delete")
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")
LIMIT_KEYS = ("max_pixels", "max_page_bytes")  # [image] keys that are not part of the spec
FORMATS = ("npy", "zarr")  # dataset.formats.NAMES: tests/test_formats.py keeps them equal
ON_MISMATCH = ("keep", "fail")
COMPRESSIONS = ("none", "zstd", "blosc-lz4", "blosc-zstd", "gzip")
# The least and the most each number may be ("section.key": (min, max)): values the code
# has been shown to survive at both ends (tests/test_limits.py loads every one of them).
# Intervals and timeouts stay below an hour or so, far from threading's TIMEOUT_MAX
# (poll_interval_ms had no maximum, and a huge one killed the watch with OverflowError).
BOUNDS: dict[str, tuple[int | float, int | float]] = {
    "watch.poll_interval_ms": (10, 600_000),
    "watch.settle_ms": (0, 3_600_000),
    "watch.rescan_interval_s": (0, 86_400),
    "batch.max_files": (1, 100_000),
    "batch.max_wait_ms": (0, 600_000),
    "image.height": (1, 65535),
    "image.width": (1, 65535),
    "image.max_pixels": (1, 1 << 40),
    "image.max_page_bytes": (1, 1 << 42),
    "dataset.shard_rows": (1, 1 << 16),
    "dataset.compression_level": (1, 9),
    "workers.count": (0, 1024),  # then capped by cores and memory (config/resources.py)
    "workers.timeout_s": (5.0, 3600.0),  # a new worker's start-up counts against its first task
    "workers.slots_per_worker": (1, 1024),
    "publish.tail_interval_ms": (100, 3_600_000),
    "publish.lease_s": (10, 3600),
    "publish.max_lag_s": (1, 86_400 * 7),
}


@dataclass(frozen=True)
class WatchConfig:
    """[watch]: the inbox, which names to take, and how a file is known to be complete."""

    directory: Path = Path("inbox")
    recursive: bool = True
    patterns: tuple[str, ...] = ("*.tif", "*.tiff")
    ignore_patterns: tuple[str, ...] = (".*", "*.part", "*.tmp", "*~")
    polling: bool = False
    poll_interval_ms: int = 1000
    settle_ms: int = 2000
    rescan_interval_s: int = 300


@dataclass(frozen=True)
class BatchConfig:
    """[batch]: a batch (the unit of commit) closes at max_files or max_wait_ms."""

    max_files: int = 64
    max_wait_ms: int = 1000


@dataclass(frozen=True)
class ImageSpec:
    """What every row of the dataset is; stored in the dataset's meta and compared on open."""

    height: int = 512
    width: int = 512
    channels: int = 1
    dtype: str = "uint16"
    interpolation: str = "area"
    fit: str = "stretch"
    pages: str = "first"
    intensity: str | tuple[float, float] = "full"
    max_pixels: int = 2**28
    max_page_bytes: int = 2**31

    @property
    def row_shape(self) -> tuple[int, ...]:
        if self.channels == 1:
            return (self.height, self.width)
        return (self.height, self.width, self.channels)

    @property
    def row_bytes(self) -> int:
        n = self.height * self.width * self.channels
        return n * {"uint8": 1, "uint16": 2, "float32": 4}[self.dtype]

    def identity(self) -> dict[str, Any]:
        """The keys that decide what a row contains (the size limits are safety limits)."""
        d: dict[str, Any] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in LIMIT_KEYS
        }
        if isinstance(self.intensity, tuple):
            d["intensity"] = list(self.intensity)
        return d


@dataclass(frozen=True)
class Storage:
    """How rows are stored: part of a dataset's identity, fixed when it is created (which
    keys count is the format's to say: `dataset.formats`)."""

    format: str = "npy"
    shard_rows: int = 64  # zarr: rows per shard object (one row per chunk inside it)
    compression: str = "none"  # zarr: the codec of each row chunk (workers encode)
    compression_level: int = 1

    @property
    def rewrites_shards(self) -> bool:
        """Whether the last shard is rebuilt whole in memory at every commit: zarr with a
        codec whose chunks cannot fill fixed slots (blosc, gzip; uncompressed and zstd
        rows are written in place, `formats.zarrcommon.codec.fixed_slot_bytes`)."""
        return self.format == "zarr" and self.compression not in ("none", "zstd")


@dataclass(frozen=True)
class DatasetConfig:
    """[dataset]: the folder of index.sqlite and the rows (images.npy or images.zarr)."""

    directory: Path = Path("dataset")
    format: str = "npy"
    shard_rows: int = 64
    compression: str = "none"
    compression_level: int = 1

    @property
    def storage(self) -> Storage:
        return Storage(self.format, self.shard_rows, self.compression, self.compression_level)


@dataclass(frozen=True)
class WorkersConfig:
    """[workers]: decoder processes (0 = one per core), their timeout and slots."""

    count: int = 0
    timeout_s: float = 30.0
    slots_per_worker: int = 4

    def resolved_count(self) -> int:
        return self.count or (os.cpu_count() or 1)


@dataclass(frozen=True)
class SourcesConfig:
    """[sources]: what happens to a source file once its fate is committed."""

    after_ingest: str = "keep"
    done_directory: Path | None = None
    failed_directory: Path | None = None


@dataclass(frozen=True)
class LogConfig:
    """[log]: JSON lines or console output, and the level."""

    format: str = "auto"
    level: str = "info"


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: "host:port" for /metrics, /healthz and /status; empty = off."""

    listen: str = "127.0.0.1:9464"


@dataclass(frozen=True)
class MetadataConfig:
    """[metadata]: keys from each file's path (a regex with named groups, matched against
    the path relative to the watched or ingested root), and which key is the label."""

    path_pattern: str = ""
    on_mismatch: str = "keep"  # "keep": a row without path keys; "fail": a failure
    label: str = ""


@dataclass(frozen=True)
class ClusterConfig:
    """[cluster]: where `tiffsink ingest` runs: "" here, "local" (a LocalCluster), or the
    address of a Dask scheduler ("tcp://HOST:PORT")."""

    scheduler: str = ""


@dataclass(frozen=True)
class PublishConfig:
    """[publish]: where the daemon publishes committed rows ("" = nowhere): s3://bucket/
    prefix, gs://, az:// or file:///path. Credentials come from the cloud's standard chain;
    an on-premises S3 is named by AWS_ENDPOINT_URL."""

    target: str = ""
    tail_interval_ms: int = 5000  # how often the partly filled last shard is replaced
    lease_s: int = 60  # a dead publisher blocks the target this long (another host)
    max_lag_s: int = 600  # /healthz fails when unpublished rows are older than this


@dataclass(frozen=True)
class Config:
    """The whole config, one frozen object handed to every stage."""

    watch: WatchConfig = field(default_factory=WatchConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    image: ImageSpec = field(default_factory=ImageSpec)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    metadata: MetadataConfig = field(default_factory=MetadataConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    source_file: Path | None = None
    # What loading changed, for the log once it is set up (e.g. workers.count capped).
    warnings: tuple[str, ...] = ()

    def excluded_folders(self) -> list[Path]:
        """Folders tiffsink writes into, so never ingests from: done, failed, the dataset."""
        src = self.sources
        return [
            p
            for p in (src.done_directory, src.failed_directory, self.dataset.directory)
            if p is not None
        ]


SECTIONS: dict[str, type] = {
    "watch": WatchConfig,
    "batch": BatchConfig,
    "image": ImageSpec,
    "dataset": DatasetConfig,
    "workers": WorkersConfig,
    "sources": SourcesConfig,
    "log": LogConfig,
    "metrics": MetricsConfig,
    "cluster": ClusterConfig,
    "metadata": MetadataConfig,
    "publish": PublishConfig,
}
