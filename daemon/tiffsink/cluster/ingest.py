"""`tiffsink ingest --scheduler ...`: the engine that backfills on a Dask cluster, into a
zarr dataset (`service/ingest.py` is the front end of both engines).

The client lists files lazily (as the local backfill does), submits groups of about a
shard's worth of files as decode tasks, in waves as capacity frees, and gets back only
each group's outcomes: the encoded chunks stay in cluster memory. It then gives pages
rows in completion order (dense, whatever fails) and, for every full shard, submits one
task that writes that shard whole from the groups' chunks. When a shard task is done the
client commits its rows through index.sqlite, in row order: the same commit point as
locally, and the client is its only writer. A killed worker's tasks are rerun by Dask; a
killed client leaves at most shards past the committed rows, which the next run cuts.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import structlog

from ..batch import Candidate
from ..config import Config
from ..dataset import DatasetWriter
from ..dataset.formats import format_of
from ..decode.outcome import Outcome
from ..errors import ClusterError
from ..feed.report import CommitInfo
from ..logthrottle import throttle
from ..signals import StopSignals
from . import tasks
from .connect import check_workers, connect
from .plan import ShardJob, ShardPlanner
from .snapshot import SNAPSHOT_EVERY_S, publish_snapshot

log = structlog.get_logger("tiffsink")

WAIT_S = 0.5  # how long to wait for a task before looking at Ctrl-C again
GROUPS_PER_WORKER = 2  # decode tasks in flight per worker: one running, one queued
# A decode task covers a quarter shard of files: big enough that scheduling costs
# nothing, small enough that the last tasks of a run spread over the workers.
GROUPS_PER_SHARD = 4


class ClusterEngine:
    """Runs a backfill on the Dask cluster at `scheduler` ("local" or an address)."""

    def __init__(self, config: Config, scheduler: str) -> None:
        self.config, self.scheduler = config, scheduler

    def start_early(self) -> None:
        """Nothing: the cluster is reached (or started) in `run`."""

    def check(self) -> None:
        """Only a format that takes whole shards can be written from many hosts."""
        if not format_of(self.config.dataset.storage).whole_shards:
            raise ClusterError(
                self.config.dataset.directory,
                'a cluster backfill writes a zarr dataset: set [dataset] format = "zarr" (an '
                "npy file cannot take whole-shard writes from many hosts); convert an existing "
                "one with `tiffsink export`",
            )

    def run(
        self,
        writer: DatasetWriter,
        cands: Callable[[Callable[[], None]], Iterator[Candidate]],
        on_commit: Callable[[CommitInfo], None],
        on_skip: Callable[[], None],
        stop: StopSignals,
    ) -> None:
        """Ingest every candidate `cands(on_skip)` lists, until done or stopped."""
        with connect(self.config, self.scheduler) as client:
            n = check_workers(client, writer.layout.tmp)
            log.info("cluster.ready", scheduler=self.scheduler, workers=n, rows=writer.committed)
            run = _Run(client, self.config, writer, on_commit, on_skip, stop, n)
            run.drive(cands(on_skip))
            publish_snapshot(writer)  # once at the end, for readers on other hosts


class _Run:
    """One cluster backfill: waves of decode tasks, shard tasks, commits in row order."""

    def __init__(
        self,
        client: Any,
        config: Config,
        writer: DatasetWriter,
        on_commit: Callable[[CommitInfo], None],
        on_skip: Callable[[], None],
        stop: StopSignals,
        workers: int,
    ) -> None:
        self.client, self.config, self.writer = client, config, writer
        self.on_commit, self.on_skip, self.stop = on_commit, on_skip, stop
        self.storage = config.dataset.storage
        self.group_files = max(1, self.storage.shard_rows // GROUPS_PER_SHARD)
        self.max_groups = GROUPS_PER_WORKER * workers
        self.planner = ShardPlanner(writer.committed, self.storage.shard_rows)
        self.decoding: dict[Any, list[Candidate]] = {}  # group future -> its files
        self.writing: deque[ShardJob] = deque()  # submitted shard jobs, in row order
        self.shards = writer.store.shard_writer()  # the format's whole-shard path
        self.snapshot_at = time.monotonic()
        self._ids = 0

    def drive(self, cands: Iterator[Candidate]) -> None:
        from distributed import wait

        feed: Iterator[Candidate] | None = cands
        while True:
            if self.stop.requested:
                self._cancel()
                return
            # Bounded: decode tasks in flight, and decoded groups waiting for their shard
            # task (their chunks are in cluster memory) never exceed max_groups each.
            while (
                feed is not None
                and len(self.decoding) < self.max_groups
                and len(self.writing) < self.max_groups
            ):
                group = list({c.path: c for c in itertools.islice(feed, self.group_files)}.values())
                if not group:
                    feed = None
                    break
                self._submit_group(group)
            if feed is None and not self.decoding:
                self.planner.flush()
            self._submit_shards()
            if not self.decoding and not self.writing:
                return
            pending = [*self.decoding, *(j.future for j in self.writing if j.future)]
            try:
                done = wait(pending, timeout=WAIT_S, return_when="FIRST_COMPLETED").done
            except TimeoutError:  # nothing finished yet: look at the stop flag again
                continue
            for fut in [f for f in self.decoding if f in done]:
                self._decoded(fut)
            self._commit_done()

    def _submit_group(self, group: list[Candidate]) -> None:
        items = [tasks.FileItem(c.path, c.root or "/") for c in group]
        fut = self.client.submit(
            tasks.decode_group,
            items,
            self.writer.spec,
            self.shards,
            self.config.metadata,
            pure=False,
        )
        self.decoding[fut] = group

    def _decoded(self, fut: Any) -> None:
        """A group's outcomes: check versions that changed since listing, assign rows."""
        group = self.decoding.pop(fut)
        outcomes: list[Outcome] = self.client.submit(tasks.outcomes_of, fut).result()
        for o in outcomes:
            if o.warning:
                throttle.warning(
                    "file.metadata_unreadable", path=group[o.key].path, detail=o.warning
                )
        changed = []  # versions other than the listed ones: maybe known already
        for o in outcomes:
            c = group[o.key]
            if not o.failed and (o.size, o.mtime_ns) != (c.size, c.mtime_ns):
                changed.append((c.path, o.size, o.mtime_ns))
        known = self.writer.lookup.known(changed) if changed else set()
        skipped = self.planner.add(
            fut, outcomes, group, lambda o: (group[o.key].path, o.size, o.mtime_ns) in known
        )
        for _ in range(skipped):
            self.on_skip()

    def _submit_shards(self) -> None:
        for job in self.planner.ready:
            if job.parts:
                plan = tasks.ShardPlan(self.shards, job.index, job.keep)
                job.future = self.client.submit(tasks.write_shard, plan, job.parts, pure=False)
            self.writing.append(job)
        self.planner.ready = []

    def _commit_done(self) -> None:
        """Commit finished shards in row order (a later one waits for the earlier)."""
        while self.writing and (self.writing[0].future is None or self.writing[0].future.done()):
            job = self.writing.popleft()
            if job.future is not None:
                job.future.result()  # a task's error (ENOSPC, EIO) ends the run here
            t0 = time.monotonic()
            self.writer.commit_written(job.records, [rec for _, rec in job.failures])
            self._ids += 1
            info = CommitInfo(
                batch_id=self._ids,
                rows=len(job.records),
                ingested=job.files_done,
                failed=job.failures,
                skipped=0,  # skips are counted as the group is planned (`on_skip`)
                commit_ms=(time.monotonic() - t0) * 1000,
                batch_ms=0.0,  # shards have no batch wait: written as soon as full
                first_row=job.records[0].row if job.records else 0,
            )
            self.on_commit(info)  # the job, and its chunks, are let go
            if time.monotonic() - self.snapshot_at > SNAPSHOT_EVERY_S:
                publish_snapshot(self.writer)
                self.snapshot_at = time.monotonic()

    def _cancel(self) -> None:
        """Ctrl-C: cancel every task; nothing uncommitted is ever visible."""
        log.warning("ingest.stopping", detail="cancelling the cluster's tasks")
        futs = [*self.decoding, *(j.future for j in self.writing if j.future)]
        self.client.cancel(futs)
        self.decoding.clear()
        self.writing.clear()
