"""The local engine of a backfill: this machine's worker processes, through the same
pipeline as the daemon.

Only a few batches of paths are held at once (the feed is lazy), so the supervisor's
memory does not grow with the number of files. A stop request commits the batch in
flight and ends the run; nothing uncommitted is ever visible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import structlog

from ..batch import Batcher, Candidate
from ..config import Config
from ..dataset import DatasetWriter
from ..feed.report import CommitInfo
from ..signals import StopSignals
from .arena import sweep_stale_arenas
from .launcher import start_early
from .pipeline import Pipeline

log = structlog.get_logger("tiffsink")


class LocalEngine:
    """Runs a backfill on this machine's worker pool (`[workers]`)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def check(self) -> None:
        """Any dataset format can be written locally."""

    def start_early(self) -> None:
        """The workers' fork server: it imports their modules while the files are listed."""
        start_early()

    def run(
        self,
        writer: DatasetWriter,
        cands: Callable[[Callable[[], None]], Iterator[Candidate]],
        on_commit: Callable[[CommitInfo], None],
        on_skip: Callable[[], None],
        stop: StopSignals,
    ) -> None:
        """Ingest every candidate `cands(on_skip)` lists, until done or stopped."""
        sweep_stale_arenas()
        batcher = Batcher(self.config.batch.max_files, self.config.batch.max_wait_ms)
        pipeline = Pipeline(self.config, writer, on_commit, requeue=batcher.add)
        try:
            _drive(pipeline, batcher, cands(on_skip), stop, self.config.batch.max_files)
        finally:
            pipeline.close()


def _drive(
    pipeline: Pipeline,
    batcher: Batcher,
    cands: Iterator[Candidate],
    stop: StopSignals,
    max_files: int,
) -> None:
    """Keep about two batches of paths queued, cut batches, step until all is committed."""
    feed: Iterator[Candidate] | None = cands
    stop_logged = False
    while True:
        while feed is not None and not stop.requested and len(batcher) < 2 * max_files:
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
