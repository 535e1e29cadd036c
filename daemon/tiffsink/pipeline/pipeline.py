"""The supervisor's pipeline: batches of files in, committed rows and failures out.

Batches are committed strictly in order, because rows are positional. Workers write
their pages straight into reserved pending rows, so the supervisor touches no pixels;
the next batch already decodes while the head is committed; tasks in flight are bounded
(two bundles per worker), so memory does not grow with the number of files. Every file
ends as rows, a recorded failure, or a skip (its version is already in the index). The
jobs are split: `dispatch` feeds workers and reserves the rows they write, `outcomes`
handles their answers, `rowmap` tracks pending rows and gathers a batch's rows before its
commit, `committer` makes batches durable in its thread, `space` pauses intake while the
disk is full.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import structlog

from ..batch import Candidate
from ..config import Config
from ..dataset import DatasetWriter
from ..errors import DatasetFullError
from .committer import Committer
from .dispatch import Dispatcher
from .jobs import Batch, CommitInfo, Job
from .outcomes import Outcomes
from .pool import Pool
from .rowmap import RowMap
from .space import SpaceGuard

log = structlog.get_logger("tiffsink")

COMMIT_POLL_S = 0.005  # how often to look for a finished commit while one runs


class Pipeline:
    """Files from a feeder to committed rows. Lives in the supervisor's main thread, which
    calls `submit` and `step`; it owns the worker pool and the committer thread."""

    def __init__(
        self,
        config: Config,
        writer: DatasetWriter,
        on_commit: Callable[[CommitInfo], None] | None = None,
        requeue: Callable[[Candidate], None] | None = None,
        idle_wait: Callable[[float], None] = time.sleep,
    ) -> None:
        self.writer = writer
        spec, w = config.image, config.workers
        sink = writer.store.sink()
        self.pool = Pool(
            spec, w.resolved_count(), w.slots_per_worker, w.timeout_s, sink, config.metadata
        )
        chunk = max(1, w.slots_per_worker // 2) if spec.pages == "all" else 1
        self.rowmap = RowMap(writer)
        self.dispatcher = Dispatcher(self.pool, chunk, self.rowmap.reserve, writer.offset)
        self.committer = Committer(writer)
        need = 2 * config.batch.max_files * writer.row_bytes + (1 << 20)
        self.space = SpaceGuard(writer.directory, need)
        self.on_commit, self.requeue = on_commit, requeue
        self.batches: deque[Batch] = deque()  # open batches; [0] is the head
        self.outcomes = Outcomes(writer, self.dispatcher, self.rowmap)
        self.in_flight_paths: set[str] = set()
        self._ids = 0
        # How to pass time when no worker is busy; the daemon wakes on its event queue.
        self.idle_wait = idle_wait

    # -- intake ---------------------------------------------------------------------
    def can_accept(self) -> bool:
        """At most two batches: one writing/committing, one decoding ahead of it; none
        while the dataset's disk is full."""
        return self.space.ok() and len(self.batches) < 2

    def disk_full(self) -> bool:
        return self.space.paused

    def idle(self) -> bool:
        return not self.batches and self.committer.running is None

    def pending_files(self) -> int:
        running = self.committer.running
        return sum(len(b.jobs) for b in self.batches) + (len(running.jobs) if running else 0)

    def submit(self, cands: list[Candidate]) -> None:
        """Open a batch of these files; versions already in the index are skipped."""
        self._ids += 1
        batch = Batch(self._ids)
        versions = [v for c in cands if not c.checked and (v := c.version()) is not None]
        known = self.writer.lookup.known(versions) if versions else set()
        for c in cands:
            if known and c.version() in known:
                continue
            if c.path in self.in_flight_paths:
                # Same path already decoding: look again once that one is committed.
                self._requeue(c)
                continue
            job = Job(c, batch)
            batch.add(job)
            self.in_flight_paths.add(c.path)
            self.dispatcher.add(job)
        if batch.jobs:
            # A path with rows may have grown by whole pages: its worker is told the
            # committed pages' digests and skips them if the file begins with them.
            prior = self.writer.lookup.committed_pages([j.cand.path for j in batch.jobs])
            for job in batch.jobs if prior else ():
                job.prior = prior.get(job.cand.path)
        self.batches.append(batch)
        self.dispatcher.dispatch()

    def _requeue(self, cand: Candidate) -> None:
        """Back to the feeder's queue; by the time it returns its version may be known."""
        cand.checked = False
        if self.requeue is not None:
            self.requeue(cand)

    # -- the loop's one step ----------------------------------------------------------
    def step(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for worker results, handle them, commit what is complete."""
        if self.committer.running is not None:
            timeout_s = min(timeout_s, COMMIT_POLL_S)
        try:
            if not self.dispatcher.busy:
                self.idle_wait(timeout_s)
                self.pool.poll(0)  # idle workers that died are replaced now, not at next use
            else:
                done, lost = self.pool.poll(timeout_s)
                for task, out in done:
                    self.outcomes.finish(task, out)
                for lo in lost:
                    self.outcomes.lost(lo)
                self.outcomes.raise_dataset_error()
            self._reap(wait=False)
            self._commit_ready()
            self.dispatcher.dispatch()
        except DatasetFullError as e:
            self._disk_full(e)

    # -- commits ----------------------------------------------------------------------
    def _commit_ready(self) -> None:
        """Hand the head batch to the committer once all its files are resolved and its rows
        are gathered; the next batches go on decoding while the commit fsyncs."""
        if self.committer.running is not None or not self.batches:
            return
        if not self.batches[0].resolved():
            return
        rows = self.rowmap.gather(self.batches[0])
        if rows is None:
            return  # a later batch's worker is still writing a row it needs
        self.committer.start(self.batches.popleft(), rows)

    def _reap(self, wait: bool) -> None:
        """Deliver a finished commit: its paths leave the in-flight set, then the callback
        runs here, in the supervisor's thread. Its errors (disk full, EIO) surface here."""
        batch = self.committer.running
        got = self.committer.reap(wait)
        if got is None or batch is None:
            return
        info, rows = got
        self.rowmap.committed(rows)
        for j in batch.jobs:
            self.in_flight_paths.discard(j.cand.path)
        if not self.batches and not self.dispatcher.busy:
            self.rowmap.clear()  # only holes are left: give their space back
            self.writer.discard_pending()
        if self.on_commit is not None:
            self.on_commit(info)

    def _disk_full(self, err: DatasetFullError) -> None:
        """Give back the uncommitted rows and their space; every file of the open batches
        goes back to the queue; intake pauses until there is room again."""
        failed = []
        running = self.committer.running
        if running is not None:
            try:
                self._reap(wait=True)  # a commit already running may well succeed
            except DatasetFullError:
                failed.append(running)
                self.committer.drop()
        files = 0
        for batch in [*failed, *self.batches]:
            batch.aborted = True
            for job in batch.jobs:
                self.in_flight_paths.discard(job.cand.path)
                self._requeue(job.cand)
                files += 1
        self.batches.clear()
        self.dispatcher.clear()
        self._drain()
        # Only now: no commit reads the file and no worker writes a pending row any more.
        self.writer.discard_pending()
        self.rowmap.clear()
        self.space.pause()
        log.error(
            "dataset.disk_full",
            detail=str(err),
            files_requeued=files,
            action="nothing of the open batches was committed; paused until space returns",
        )

    def _drain(self) -> None:
        """Wait for every task in flight to answer (the pool's timeout bounds the wait)."""
        while self.dispatcher.busy:
            done, lost = self.pool.poll(0.1)
            for task, out in done:
                self.outcomes.finish(task, out)
            for lo in lost:
                self.outcomes.lost(lo)
        self.outcomes.dataset_error = None

    def close(self) -> None:
        """Wait for a commit in flight (so a stop never drops a finished batch)."""
        try:
            self._reap(wait=True)
        finally:
            self.committer.close()
            self.pool.close()
