"""The supervisor's pipeline: batches of files in, committed rows and failures out.

Batches are committed strictly in order, because rows are positional: only the oldest
batch (the head) writes rows into the dataset, straight from the worker's slot (the only
copy is the one into the file). The next batch already decodes meanwhile; its pages wait
in their slots until it becomes the head. Slots are bounded, so memory does not grow
with the number of files. Every file ends as rows, a recorded failure, or a skip (its
version is already in the index).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog

from .config import Config
from .decode import PageInfo
from .errors import DatasetFullError
from .index import FailureRecord, RowRecord, now
from .pool import Lost, Pool
from .store import DatasetWriter
from .worker import Failure, Result, Task

log = structlog.get_logger("tiffsink")

FULL_RECHECK_S = 5.0
COMMIT_POLL_S = 0.005  # how often to look for a finished commit while one runs
MAX_CRASH_ATTEMPTS = 2  # a crash may be the machine's fault (OOM killer): try once more


@dataclass
class Candidate:
    """A file a feeder believes is complete; size/mtime from the feeder's stat, if any."""

    path: str
    root: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    seen_at: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class _Job:
    cand: Candidate
    batch: _Batch
    version: tuple[int, int] | None = None
    content_hash: str = ""
    pages_total: int = 1
    next_page: int = 0
    attempts: int = 0
    busy: bool = False
    finished: bool = False
    skipped: bool = False
    failure: FailureRecord | None = None
    held: list[tuple[int, PageInfo]] = field(default_factory=list)


@dataclass(eq=False)
class _Batch:
    id: int
    jobs: list[_Job] = field(default_factory=list)
    rows: list[tuple[_Job, PageInfo]] = field(default_factory=list)  # pending rows, in order
    started: float = field(default_factory=time.monotonic)
    base: int = -1  # its first row; set when it becomes the head
    aborted: bool = False  # disk full: its files went back to the queue


@dataclass
class CommitInfo:
    """What one commit made durable; feeders act on sources only after this."""

    batch_id: int
    rows: int
    ingested: list[tuple[Candidate, tuple[int, int], int]]  # candidate, version, pages
    failed: list[tuple[Candidate, FailureRecord]]
    skipped: int
    commit_ms: float
    batch_ms: float
    first_row: int


class Pipeline:
    def __init__(
        self,
        config: Config,
        writer: DatasetWriter,
        on_commit: Callable[[CommitInfo], None] | None = None,
        requeue: Callable[[Candidate], None] | None = None,
    ) -> None:
        self.writer = writer
        self.spec = config.image
        w = config.workers
        self.pool = Pool(self.spec, w.resolved_count(), w.slots_per_worker, w.timeout_s)
        self.chunk = max(1, w.slots_per_worker // 2) if self.spec.pages == "all" else 1
        self.on_commit, self.requeue = on_commit, requeue
        self.batches: deque[_Batch] = deque()
        self.todo: deque[_Job] = deque()
        self.tasks: dict[int, tuple[_Job, Task]] = {}
        self.in_flight_paths: dict[str, _Job] = {}
        self._ids = 0
        self.max_files = config.batch.max_files
        # How to pass time when no worker is busy; the daemon wakes on its event queue.
        self.idle_wait: Callable[[float], None] = time.sleep
        self.full_since: float | None = None
        # Commits run in their own thread so fsync never stalls dispatch; at most one.
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="tiffsink-commit")
        self.committing: tuple[_Batch, Future[float]] | None = None
        self._full_checked = 0.0

    # -- intake ---------------------------------------------------------------------
    def can_accept(self) -> bool:
        """At most two batches: one writing/committing, one decoding ahead of it; none
        while the dataset's disk is full."""
        if self.full_since is not None and not self._space_back():
            return False
        return len(self.batches) < 2

    def _space_back(self) -> bool:
        """Re-check free space at most every few seconds; enough for two batches resumes."""
        now_m = time.monotonic()
        if now_m - self._full_checked < FULL_RECHECK_S:
            return False
        self._full_checked = now_m
        st = os.statvfs(self.writer.directory)
        free = st.f_bavail * st.f_frsize
        need = 2 * self.max_files * self.writer.row_bytes + (1 << 20)
        if free < need:
            log.warning(
                "dataset.disk_full",
                free_bytes=free,
                need_bytes=need,
                since_s=round(now_m - (self.full_since or now_m)),
            )
            return False
        log.info("dataset.space_available", free_bytes=free)
        self.full_since = None
        return True

    def idle(self) -> bool:
        return not self.batches and self.committing is None

    def pending_files(self) -> int:
        n = sum(len(b.jobs) for b in self.batches)
        return n + (len(self.committing[0].jobs) if self.committing else 0)

    def submit(self, cands: list[Candidate]) -> None:
        self._ids += 1
        batch = _Batch(self._ids)
        versions = [
            (c.path, c.size, c.mtime_ns)
            for c in cands
            if c.size is not None and c.mtime_ns is not None
        ]
        known = self.writer.known(versions) if versions else set()
        for c in cands:
            if (c.path, c.size, c.mtime_ns) in known:
                continue
            if c.path in self.in_flight_paths:
                # Same path already decoding: look again once that one is committed.
                if self.requeue is not None:
                    self.requeue(c)
                continue
            job = _Job(c, batch)
            batch.jobs.append(job)
            self.in_flight_paths[c.path] = job
            self.todo.append(job)
        if not self.batches:
            batch.base = self.writer.cursor  # the head: its rows are written as they come
        self.batches.append(batch)
        self._dispatch()

    # -- the loop's one step ----------------------------------------------------------
    def step(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for worker results, handle them, commit what is complete."""
        if self.committing is not None:
            timeout_s = min(timeout_s, COMMIT_POLL_S)
        try:
            if not self.tasks:
                self.idle_wait(timeout_s)
            else:
                done, lost = self.pool.poll(timeout_s)
                for task, out in done:
                    self._finish(task, out)
                for lo in lost:
                    self._lost(lo)
            self._reap_commit(wait=False)
            self._commit_ready()
            self._dispatch()
        except DatasetFullError as e:
            self._disk_full(e)

    def _disk_full(self, err: DatasetFullError) -> None:
        """Give back the uncommitted rows and their space; every file of the open batches
        goes back to the queue; intake pauses until there is room again."""
        failed = []
        if self.committing is not None:
            batch = self.committing[0]
            try:
                self._reap_commit(wait=True)  # a commit already running may well succeed
            except DatasetFullError:
                failed.append(batch)
                self.committing = None
        self.writer.discard_pending()  # only now: no commit is reading the file any more
        files = 0
        for batch in [*failed, *self.batches]:
            batch.aborted = True
            for job in batch.jobs:
                self._release([s for s, _ in job.held])
                job.held.clear()
                self.in_flight_paths.pop(job.cand.path, None)
                if self.requeue is not None:
                    self.requeue(job.cand)
                files += 1
        self.batches.clear()
        self.todo.clear()
        self.full_since = self._full_checked = time.monotonic()
        log.error(
            "dataset.disk_full",
            detail=str(err),
            files_requeued=files,
            action="nothing of the open batches was committed; paused until space returns",
        )

    def _dispatch(self) -> None:
        arena = self.pool.arena
        while self.todo and arena.free and self.pool.capacity > 0:
            job = self.todo[0]
            if job.batch is not self.batches[0] and self._ahead_slots() >= arena.n // 2:
                # Decoding ahead holds its slots until its batch is the head; keep half
                # of them for the head, or a multi-page head file could wait forever.
                break
            self.todo.popleft()
            n = min(self.chunk, len(arena.free))
            if job.version is not None:
                n = min(n, job.pages_total - job.next_page)
            slots = tuple(arena.free.popleft() for _ in range(max(1, n)))
            self._ids += 1
            task = Task(self._ids, job.cand.path, job.cand.root, job.next_page, slots, job.version)
            self.tasks[task.task_id] = (job, task)
            job.busy = True
            self.pool.submit(task)

    def _ahead_slots(self) -> int:
        """Slots taken by batches behind the head (decoding or holding pages)."""
        head = self.batches[0]
        held = sum(len(j.held) for b in list(self.batches)[1:] for j in b.jobs)
        return held + sum(len(t.slots) for j, t in self.tasks.values() if j.batch is not head)

    def _release(self, slots: tuple[int, ...] | list[int]) -> None:
        self.pool.arena.free.extend(slots)

    def _finish(self, task: Task, out: Result | Failure) -> None:
        job, _ = self.tasks.pop(task.task_id)
        job.busy = False
        if job.batch.aborted:
            self._release(task.slots)
            return
        if isinstance(out, Failure):
            self._release(task.slots)
            size, mtime = out.size, out.mtime_ns
            if size < 0 and job.cand.size is not None and job.cand.mtime_ns is not None:
                # Refused before it was opened (FIFO, symlink): record the version the
                # feeder saw, so a rescan finds it known instead of retrying it forever.
                size, mtime = job.cand.size, job.cand.mtime_ns
            self._fail(job, size, mtime, out.reason, out.detail)
            return
        if job.version is None:
            version = (out.size, out.mtime_ns)
            if self.writer.known([(job.cand.path, *version)]):
                self._release(task.slots)
                job.skipped = job.finished = True
                return
            job.version, job.pages_total = version, out.pages_total
            job.content_hash = out.content_hash or ""
        log.debug(
            "file.decoded",
            path=job.cand.path,
            pages=len(out.pages),
            first_page=task.first_page,
            decode_ms=round(out.decode_ms, 2),
        )
        if not out.pages:
            self._release(task.slots)
            self._fail(job, *job.version, "corrupt", f"page {job.next_page} yielded no image")
            return
        head = self.batches[0] is job.batch
        for slot, info in zip(task.slots, out.pages, strict=False):
            if head:
                self._write(job, slot, info)
            else:
                job.held.append((slot, info))
        self._release(task.slots[len(out.pages) :])
        job.next_page += len(out.pages)
        if job.next_page < job.pages_total:
            self.todo.appendleft(job)  # finish started files first: their slots are taken
        else:
            job.finished = True

    def _write(self, job: _Job, slot: int, info: PageInfo) -> None:
        self.writer.write_row(self.pool.arena.view(slot))
        self._release([slot])
        job.batch.rows.append((job, info))

    def _lost(self, lo: Lost) -> None:
        job, task = self.tasks.pop(lo.task.task_id)
        job.busy = False
        self._release(task.slots)
        if job.batch.aborted:
            return
        job.attempts += 1
        log.warning("worker.restarted", reason=lo.reason, path=job.cand.path, detail=lo.detail)
        if lo.reason == "decoder_crash" and job.attempts < MAX_CRASH_ATTEMPTS:
            self.todo.appendleft(job)
            return
        size, mtime = job.version or _stat_version(job.cand.path)
        self._fail(job, size, mtime, lo.reason, lo.detail)

    def _fail(self, job: _Job, size: int, mtime_ns: int, reason: str, detail: str) -> None:
        """Record the failure and take back any rows the file already had in this batch."""
        job.failure = FailureRecord(job.cand.path, size, mtime_ns, reason, detail, now())
        job.finished = True
        self._release([s for s, _ in job.held])
        job.held.clear()
        rows = job.batch.rows
        if job.batch is self.batches[0] and any(j is job for j, _ in rows):
            base = job.batch.base
            for i in range(len(rows) - 1, -1, -1):
                if rows[i][0] is job:
                    last = len(rows) - 1
                    if i != last:
                        self.writer.move_row(base + last, base + i)
                        rows[i] = rows[last]
                    rows.pop()
            self.writer.truncate_pending(base + len(rows))
        log.warning("file.failed", path=job.cand.path, reason=reason, detail=detail)

    def _commit_ready(self) -> None:
        """Hand the head batch to the committer once all its files are resolved; the next
        batch becomes the head and writes its decoded pages while the commit fsyncs."""
        if self.committing is not None or not self.batches:
            return
        if not all(j.finished for j in self.batches[0].jobs):
            return
        batch = self.batches.popleft()
        self._start_commit(batch)
        if self.batches:
            nxt = self.batches[0]
            nxt.base = self.writer.cursor
            for job in nxt.jobs:
                for slot, info in job.held:
                    self._write(job, slot, info)
                job.held.clear()

    def _start_commit(self, batch: _Batch) -> None:
        base = batch.base
        at = now()
        records = [
            RowRecord(
                base + i,
                j.cand.path,
                info.page,
                *(j.version or (-1, -1)),
                j.content_hash,
                info.height,
                info.width,
                info.dtype,
                info.channels,
                at,
            )
            for i, (j, info) in enumerate(batch.rows)
        ]
        failures = [j.failure for j in batch.jobs if j.failure is not None]
        fut = self._committer.submit(self._timed_commit, records, failures)
        self.committing = (batch, fut)

    def _timed_commit(self, records: list[RowRecord], failures: list[FailureRecord]) -> float:
        t0 = time.monotonic()
        self.writer.commit(records, failures)
        return (time.monotonic() - t0) * 1000

    def _reap_commit(self, wait: bool) -> None:
        """Finish a commit the committer thread completed: callbacks run here, in the
        supervisor's thread. Its errors (disk full, EIO) surface here too."""
        if self.committing is None:
            return
        batch, fut = self.committing
        if not wait and not fut.done():
            return
        try:
            commit_ms = fut.result()
        except DatasetFullError:
            raise  # _disk_full requeues this batch's files
        except BaseException:
            self.committing = None
            raise
        self.committing = None
        t1 = time.monotonic()
        base = batch.base
        n_rows = len(batch.rows)
        for j in batch.jobs:
            self.in_flight_paths.pop(j.cand.path, None)
        ingested = [
            (j.cand, j.version, j.pages_total)
            for j in batch.jobs
            if j.version is not None and j.failure is None and not j.skipped
        ]
        info = CommitInfo(
            batch.id,
            n_rows,
            ingested,
            [(j.cand, j.failure) for j in batch.jobs if j.failure is not None],
            sum(1 for j in batch.jobs if j.skipped),
            commit_ms,
            (t1 - batch.started) * 1000,
            base,
        )
        if self.on_commit is not None:
            self.on_commit(info)

    def close(self) -> None:
        """Wait for a commit in flight (so a stop never drops a finished batch)."""
        try:
            self._reap_commit(wait=True)
        finally:
            self._committer.shutdown(wait=True)
            self.pool.close()


def _stat_version(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return (-1, -1)
    return st.st_size, st.st_mtime_ns
