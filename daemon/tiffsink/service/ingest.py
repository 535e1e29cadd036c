"""`tiffsink ingest`: backfill existing folders, on this machine or on a Dask cluster.

The one front end of both engines: it checks the request before anything is created,
lists the files lazily (`feed.backfill`), opens the dataset, counts and shows progress,
and turns Ctrl-C (or SIGTERM) into a stop request; the engine only decodes, writes and
commits. A re-run skips every file version already in the index (rows or recorded
failures): a backfill is resumable, whichever engine ran it before.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import structlog

from ..batch import Candidate
from ..config import Config
from ..dataset import DatasetWriter
from ..dataset.meta import set_label
from ..feed.backfill import Backfill
from ..feed.report import CommitInfo
from ..signals import EX_INTERRUPTED, StopSignals
from .progress import Progress, Summary

log = structlog.get_logger("tiffsink")


class Engine(Protocol):
    """Decodes, writes and commits the candidates of one backfill."""

    def check(self) -> None:
        """Raise a TiffsinkError if this engine cannot serve the config (nothing made yet)."""

    def start_early(self) -> None:
        """Begin what takes time to start (processes, a cluster), without waiting for it."""

    def run(
        self,
        writer: DatasetWriter,
        cands: Callable[[Callable[[], None]], Iterator[Candidate]],
        on_commit: Callable[[CommitInfo], None],
        on_skip: Callable[[], None],
        stop: StopSignals,
    ) -> None:
        """Ingest what `cands(on_skip)` lists; report each commit; end early on `stop`."""


def engine_for(config: Config, scheduler: str | None) -> Engine:
    """The local pool, or the Dask cluster at `scheduler` ("local" or an address)."""
    if scheduler:
        from ..cluster.ingest import ClusterEngine  # imports dask: only when asked for

        return ClusterEngine(config, scheduler)
    from ..pipeline.backfill import LocalEngine

    return LocalEngine(config)


def ingest(
    config: Config,
    sources: list[Path],
    progress: bool | None = None,
    scheduler: str | None = None,
) -> Summary:
    """Backfill `sources` into `config.dataset.directory`; Ctrl-C commits what is in flight."""
    engine = engine_for(config, scheduler)
    engine.check()
    engine.start_early()  # workers get ready while the files are listed and the dataset opens
    feed = Backfill(config, sources)
    summary = Summary(files_total=feed.require_files())
    writer = DatasetWriter(config.dataset.directory, config.image, config.dataset.storage)
    set_label(writer.conn, config.metadata.label)
    bar = Progress(summary, sys.stderr.isatty() if progress is None else progress)

    def on_commit(info: CommitInfo) -> None:
        done = summary.add(info)
        log.debug("batch.committed", rows=info.rows, files=done, ms=round(info.commit_ms, 1))
        bar.update(done)

    def on_skip() -> None:
        summary.skip()
        bar.update(1)

    def cands(skipped: Callable[[], None]) -> Iterator[Candidate]:
        return feed.candidates(writer.lookup.known, skipped)

    stop = StopSignals(EX_INTERRUPTED, "tiffsink: second signal, stopping at once")
    t0 = time.monotonic()
    try:
        with stop:
            engine.run(writer, cands, on_commit, on_skip, stop)
    finally:
        writer.close()
        bar.close()
    summary.seconds = time.monotonic() - t0
    summary.interrupted = stop.requested
    return summary
