"""The supervisor's pipeline: batches of files in, committed rows and failures out.

A thin loop around the state machine (`state.py`), which alone decides: what to send,
which rows to move, what to commit, what goes back to the feeder. This shell only does
the I/O around it and turns what happens into events: it looks versions up in the
index, polls the pool, reaps the committer, and runs the machine's instructions with the
pool (send), the committer (move rows, commit), the writer (cut the pending tail), the
feeder (requeue, report) and `space` (pause intake while the disk is full).

Batches are committed strictly in order, because rows are positional. Workers write
their pages straight into reserved pending rows, so the supervisor touches no pixels;
the next batch already decodes while the head is committed; tasks in flight are bounded
(two bundles per worker), so memory does not grow with the number of files. Every file
ends as rows, a recorded failure, or a skip (its version is already in the index).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable

import structlog

from ..batch import Candidate
from ..config import Config
from ..dataset import DatasetWriter
from ..decode.outcome import Outcome
from ..errors import DatasetFullError, DatasetIOError
from ..feed.report import CommitInfo
from .committer import Committer
from .events import Advance, Answers, CommitFailed, DiskFull, Drained, Event, Stop, Submit
from .instructions import (
    Commit,
    CutPending,
    Drain,
    Instruction,
    PauseIntake,
    Report,
    Requeue,
    RowWriteFailed,
    Send,
    WaitCommit,
)
from .messages import Lost, Task
from .pool import Pool
from .space import SpaceGuard
from .state import SupervisorState

log = structlog.get_logger("tiffsink")

DRAIN_POLL_S = 0.1


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
        self.pool = Pool(spec, w.resolved_count(), w.timeout_s, sink, config.metadata)
        # Pages per task of a multi-page file: half a worker's rows, the other half being
        # the task queued behind it.
        chunk = max(1, w.slots_per_worker // 2) if spec.pages == "all" else 1
        self.state = SupervisorState(writer.committed, chunk)
        self.committer = Committer(writer)
        self.pool.wake_on(self.committer.wake_fd)  # a finished commit ends a poll
        need = 2 * config.batch.max_files * writer.row_bytes + (1 << 20)
        self.space = SpaceGuard(writer.directory, need)
        self.on_commit, self.requeue = on_commit, requeue
        # How to pass time when no worker is busy; the daemon wakes on its event queue.
        self.idle_wait = idle_wait
        self._queue: deque[Instruction] = deque()  # instructions not run yet, in order
        self._running = False

    # -- what the loop asks ---------------------------------------------------------------
    def can_accept(self) -> bool:
        """At most two open batches; none while the dataset's disk is full."""
        return self.space.ok() and self.state.can_accept()

    def disk_full(self) -> bool:
        return self.space.paused

    def idle(self) -> bool:
        return self.state.idle()

    def pending_files(self) -> int:
        return self.state.pending_files()

    # -- intake ---------------------------------------------------------------------------
    def submit(self, cands: list[Candidate]) -> None:
        """Open a batch of these files; versions already in the index are skipped."""
        lookup = self.writer.lookup
        versions = [v for c in cands if not c.checked and (v := c.version()) is not None]
        known = lookup.known(versions) if versions else set()
        # A path with rows may have grown by whole pages: its worker is told the committed
        # pages' digests and skips them if the file begins with them.
        paths = dict.fromkeys(
            c.path
            for c in cands
            if not (known and c.version() in known) and not self.state.in_flight(c.path)
        )
        prior = lookup.committed_pages(list(paths)) if paths else {}
        self._feed(Submit(cands, known, prior, self.pool.capacity))
        self.pool.flush()

    # -- the loop's one step --------------------------------------------------------------
    def step(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for worker results, handle them, commit what is complete."""
        if not self.state.busy:
            if self.committer.running is not None:
                self.committer.wait(timeout_s)  # its end is what comes next
            else:
                self.idle_wait(timeout_s)
            self.pool.poll(0)  # idle workers that died are replaced now, not at next use
        else:
            self._answers(*self.pool.poll(timeout_s))
        self._reap(wait=False)
        self._feed(Advance(self.pool.capacity))
        self.pool.flush()

    def _answers(self, done: list[tuple[Task, Outcome]], lost: list[Lost]) -> None:
        """Hand a poll's answers in, with the lookups they need: the versions first read
        unlike the feeder saw them, and the files of lost tasks no chunk had read."""
        if not done and not lost:
            return
        check = self.state.versions_to_check(done)
        known = self.writer.lookup.known(check) if check else frozenset()
        on_disk = {
            lo.task.task_id: _stat_version(lo.task.path) for lo in lost if lo.task.version is None
        }
        self._feed(Answers(done, lost, known, on_disk))

    def _reap(self, wait: bool, closing: bool = False) -> None:
        """Hand a finished commit in; a full disk is its failure, unless the run is closing
        (nobody would take its files back: the error ends the run, as any other does)."""
        batch_id = self.committer.running
        try:
            ev = self.committer.reap(wait)
        except DatasetFullError as e:
            if closing or batch_id is None:
                raise
            self._feed(CommitFailed(batch_id, str(e)))
            return
        if ev is not None:
            self._feed(ev)

    # -- running instructions -------------------------------------------------------------
    def _feed(self, event: Event) -> None:
        """One event into the machine; its instructions run after those already queued
        (an instruction's own events are fed from inside the run)."""
        self._queue.extend(self.state.handle(event))
        if self._running:
            return
        self._running = True
        try:
            while self._queue:
                self._run(self._queue.popleft())
        finally:
            self._running = False
            self._queue.clear()

    def _run(self, ins: Instruction) -> None:
        if isinstance(ins, Send):
            self._send(ins)
        elif isinstance(ins, Commit):
            try:
                self.committer.start(ins)
            except DatasetFullError as e:  # a row move met a full disk: nothing committed
                self._feed(CommitFailed(ins.batch_id, str(e)))
        elif isinstance(ins, Report):
            if self.on_commit is not None:
                self.on_commit(ins.info)
        elif isinstance(ins, Requeue):
            ins.cand.checked = False  # by the time it returns its version may be known
            if self.requeue is not None:
                self.requeue(ins.cand)
        elif isinstance(ins, CutPending):
            self.writer.discard_pending()
        elif isinstance(ins, WaitCommit):
            self._reap(wait=True, closing=self.state.stopped)
        elif isinstance(ins, Drain):
            self._drain()
        elif isinstance(ins, PauseIntake):
            self._pause(ins)
        elif isinstance(ins, RowWriteFailed):
            path = self.writer.store.sink_path
            if not ins.full:
                raise DatasetIOError(path, f"{ins.detail}; not retried")
            self._feed(DiskFull(str(DatasetFullError(path, ins.detail))))
        else:  # pragma: no cover - the union above is exhaustive
            raise TypeError(f"unknown instruction {ins!r}")

    def _send(self, s: Send) -> None:
        """A task to the pool, with where each of its rows lies in the store's file."""
        w = self.writer
        w.reserve(s.rows[-1] + 1)
        offsets = tuple(map(w.offset, s.rows))
        task = Task(s.task_id, s.path, s.root, s.first_page, s.rows, offsets, s.version, s.prefix)
        self.pool.submit(task)

    def _drain(self) -> None:
        """Wait for every task in flight to answer (the pool's timeout bounds the wait)."""
        while self.state.busy:
            self._answers(*self.pool.poll(DRAIN_POLL_S))
        self._feed(Drained())

    def _pause(self, ins: PauseIntake) -> None:
        self.space.pause()
        log.error(
            "dataset.disk_full",
            detail=ins.detail,
            files_requeued=ins.files,
            action="nothing of the open batches was committed; paused until space returns",
        )

    def close(self) -> None:
        """Wait for a commit in flight (so a stop never drops a finished batch)."""
        try:
            self._feed(Stop())
        finally:
            try:
                self.pool.close()  # first: its poller watches the committer's wake pipe
            finally:
                self.committer.close()


def _stat_version(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return (-1, -1)
    return st.st_size, st.st_mtime_ns
