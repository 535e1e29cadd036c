"""The supervisor's bookkeeping as one state machine: events in, instructions out, no I/O.

Modelled on dask/distributed's `WorkerState`. `SupervisorState` alone owns every file in
flight (its data and queries are `bookkeeping.Bookkeeping`: the open batches and their
jobs, the jobs to decode, the tasks with the workers, the pending rows, the batch being
committed; what an answer means is `outcomes.py`, what to send next `dispatch.py`,
both functions of this one object). `handle` takes one
event (`events.py`) and returns the instructions (`instructions.py`) that the shell
(`pipeline.py`) runs with the pool, the committer, the writer and the feeder. It reads no
file, pipe or index: what it needs from them comes in with the events (index lookups,
a lost file's `stat`), so tests drive every path synchronously with plain values.

Rules kept here: batches commit strictly in order (rows are positional), at most two are
open besides the one committing; a path is never in flight twice; a crash is retried once;
a disk-full requeues every file of the open batches and cuts the pending tail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..dataset.index import now
from . import outcomes
from .bookkeeping import Bookkeeping
from .dispatch import dispatch
from .events import (
    Advance,
    Answers,
    CommitDone,
    CommitFailed,
    DiskFull,
    Drained,
    Event,
    Stop,
    Submit,
)
from .instructions import (
    CutPending,
    Drain,
    Instruction,
    PauseIntake,
    Report,
    Requeue,
    WaitCommit,
)
from .jobs import Batch, Job, Row
from .records import commit_info, commit_of


class SupervisorState(Bookkeeping):
    """Events in, instructions out; supervisor main thread only."""

    def __init__(
        self,
        committed: int,
        chunk: int,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = now,
    ) -> None:
        super().__init__(committed, chunk, clock, wall)
        self._handlers: dict[type[Any], Callable[[Any], list[Instruction]]] = {
            Submit: self._submit,
            Answers: self._answers,
            Advance: self._advance,
            CommitDone: self._commit_done,
            CommitFailed: self._commit_failed,
            DiskFull: self._disk_full,
            Drained: self._drained,
            Stop: self._stop,
        }

    # -- events ---------------------------------------------------------------------------
    def handle(self, event: Event) -> list[Instruction]:
        """Take one event; return what the shell must do, in order."""
        return self._handlers[type(event)](event)

    def _submit(self, ev: Submit) -> list[Instruction]:
        """Open a batch of these files; known versions are skipped, paths in flight requeued."""
        if self.stopped:
            raise RuntimeError("submit after stop")
        self.batch_ids += 1
        batch = Batch(self.batch_ids, started=self.clock())
        out: list[Instruction] = []
        known, prior = ev.known, ev.prior
        for c in ev.cands:
            if known and c.version() in known:
                continue
            if c.path in self.paths:
                # Same path already decoding: look again once that one is committed.
                out.append(Requeue(c))
                continue
            job = Job(c, batch, prior=prior.get(c.path) if prior else None)
            batch.add(job)
            self.paths.add(c.path)
            self.todo.append(job)
        self.batches.append(batch)
        dispatch(self, ev.room, out)
        return out

    def _answers(self, ev: Answers) -> list[Instruction]:
        """Workers' answers (rows written, retries, failures); then the first row-write
        error of the round, if a worker met one."""
        for task, res in ev.done:
            job, send = self.tasks.pop(task.task_id)
            outcomes.finish(self, job, send, res, ev.known)
        for lo in ev.lost:
            job, send = self.tasks.pop(lo.task.task_id)
            outcomes.lost(self, job, send, lo, ev.on_disk.get(send.task_id, (-1, -1)))
        err, self.row_error = self.row_error, None
        return [] if err is None else [err]

    def _advance(self, ev: Advance) -> list[Instruction]:
        out: list[Instruction] = []
        self._commit_ready(out)
        dispatch(self, ev.room, out)
        return out

    def _commit_done(self, ev: CommitDone) -> list[Instruction]:
        """Deliver a finished commit: its paths leave the in-flight set, then the report."""
        batch, rows, first = self._end_commit(ev.batch_id)
        self.rows.committed_rows(rows)
        for j in batch.jobs:
            self.paths.discard(j.cand.path)
        out: list[Instruction] = []
        if not self.batches and not self.tasks:
            out.append(self._cut())  # only holes are left: give their space back
        batch_ms = (self.clock() - batch.started) * 1000
        out.append(Report(commit_info(batch, len(rows), first, ev.commit_ms, batch_ms)))
        if self.full is not None:
            out += self._abort(self.full, [])
        return out

    def _commit_failed(self, ev: CommitFailed) -> list[Instruction]:
        """Disk full during a commit: nothing of it is in the index, its files go back too."""
        batch, _, _ = self._end_commit(ev.batch_id)
        return self._abort(self.full or ev.detail, [batch])

    def _disk_full(self, ev: DiskFull) -> list[Instruction]:
        """A commit already running may well succeed: wait for it before giving up."""
        if self.committing is not None:
            self.full = self.full or ev.detail
            return [WaitCommit()]
        return self._abort(ev.detail, [])

    def _drained(self, ev: Drained) -> list[Instruction]:
        """No worker writes a pending row any more: cut them all, pause intake."""
        files, self.requeued = self.requeued, 0
        return [self._cut(), PauseIntake(files, self.full_detail)]

    def _stop(self, ev: Stop) -> list[Instruction]:
        """A stop never drops a finished batch: wait for the commit in flight."""
        self.stopped = True
        return [WaitCommit()] if self.committing is not None else []

    # -- helpers ----------------------------------------------------------------------------

    def _commit_ready(self, out: list[Instruction]) -> None:
        """Commit the head batch once all its files are resolved and its rows gathered; the
        next batches go on decoding while the commit fsyncs."""
        if self.committing is not None or not self.batches:
            return
        head = self.batches[0]
        if not head.resolved():
            return
        got = self.rows.gather(head)
        if got is None:
            return  # a later batch's worker is still writing a row it needs
        rows, moves = got
        self.batches.popleft()
        self.committing = (head, rows, self.rows.committed)
        out.append(commit_of(head, rows, moves, self.wall()))

    def _end_commit(self, batch_id: int) -> tuple[Batch, list[Row], int]:
        if self.committing is None or self.committing[0].id != batch_id:
            raise RuntimeError(f"batch {batch_id} is not the one committing")
        got, self.committing = self.committing, None
        return got

    def _abort(self, detail: str, failed: list[Batch]) -> list[Instruction]:
        """Disk full: every file of the failed and open batches goes back to the queue;
        once no worker writes a row any more, the pending rows are cut and intake pauses."""
        self.full = None
        self.full_detail = detail
        out: list[Instruction] = []
        for batch in [*failed, *self.batches]:
            batch.aborted = True
            for job in batch.jobs:
                self.paths.discard(job.cand.path)
                out.append(Requeue(job.cand))
                self.requeued += 1
        self.batches.clear()
        self.todo.clear()
        out += [Drain()] if self.tasks else self._drained(Drained())
        return out

    def _cut(self) -> CutPending:
        self.rows.cut()
        return CutPending()
