"""`tiffsink ingest`: backfill existing folders through the same pipeline as the daemon.

The folder walk is lazy and only a few batches of paths are held at once, so the
supervisor's memory does not grow with the number of files. A re-run skips every file
version already in the index (rows or recorded failures): a backfill is resumable.
Ctrl-C (or SIGTERM) commits the batch in flight; a second one stops at once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import structlog

from ..batch import Batcher, Candidate
from ..config import Config
from ..dataset import DatasetWriter
from ..dataset.meta import set_label
from ..feed.backfill import Backfill
from ..pipeline import CommitInfo, Pipeline
from ..pipeline.arena import sweep_stale_arenas
from ..progress import Progress, Summary
from ..signals import EX_INTERRUPTED, StopSignals

log = structlog.get_logger("tiffsink")


def ingest(config: Config, sources: list[Path], progress: bool | None = None) -> Summary:
    """Backfill `sources` into `config.dataset.directory`; Ctrl-C commits what is in flight."""
    feed = Backfill(config, sources)
    summary = Summary()
    summary.files_total = feed.require_files()
    sweep_stale_arenas()
    writer = DatasetWriter(config.dataset.directory, config.image, config.dataset.storage)
    set_label(writer.conn, config.metadata.label)
    bar = Progress(summary, sys.stderr.isatty() if progress is None else progress)
    batcher = Batcher(config.batch.max_files, config.batch.max_wait_ms)

    def on_commit(info: CommitInfo) -> None:
        done = summary.add(info)
        log.debug("batch.committed", rows=info.rows, files=done, ms=round(info.commit_ms, 1))
        bar.update(done)

    def on_skip() -> None:
        summary.skip()
        bar.update(1)

    stop = StopSignals(EX_INTERRUPTED, "tiffsink: second signal, stopping at once")
    t0 = time.monotonic()
    try:
        with stop:
            pipeline = Pipeline(config, writer, on_commit, requeue=batcher.add)
            try:
                _drive(
                    pipeline, batcher, feed.candidates(writer.lookup.known, on_skip), stop, config
                )
            finally:
                pipeline.close()
    finally:
        writer.close()
        bar.close()
    summary.seconds = time.monotonic() - t0
    summary.interrupted = stop.requested
    return summary


def _drive(
    pipeline: Pipeline,
    batcher: Batcher,
    cands: Iterator[Candidate],
    stop: StopSignals,
    config: Config,
) -> None:
    """Keep about two batches of paths queued, cut batches, step until all is committed."""
    feed: Iterator[Candidate] | None = cands
    stop_logged = False
    while True:
        while feed is not None and not stop.requested and len(batcher) < 2 * config.batch.max_files:
            c = next(feed, None)
            if c is None:
                feed = None
            else:
                batcher.add(c)
        if stop.requested and not stop_logged:
            stop_logged = True
            log.warning(
                "ingest.stopping",
                detail="committing the batch in flight; press again to stop at once",
            )
        flushing = feed is None or stop.requested
        if not stop.requested and pipeline.can_accept() and batcher.ready(flush=flushing):
            pipeline.submit(batcher.take())
            continue
        if pipeline.idle() and (stop.requested or (feed is None and not len(batcher))):
            return
        pipeline.step(0.05)
