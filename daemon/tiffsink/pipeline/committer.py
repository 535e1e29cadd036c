"""The committer thread: makes the head batch durable while the next ones decode.

fsync of a batch's rows takes long enough that doing it in the supervisor's thread would
stall dispatch; so at most one commit runs in this one thread, and its outcome (or its
error: disk full, EIO) is collected back in the supervisor's thread by `reap`. It only
executes the state machine's `Commit` instructions: the row moves first, in the calling
(main) thread, while no worker writes those rows, then the writer's commit in the thread.
A finished commit writes a byte to `wake_fd`, which the supervisor's poll watches, so the
next commit starts at once instead of at the next poll timeout (which, with batches of
one file, had capped the rate at one commit per timeout).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

from ..dataset import DatasetWriter
from ..dataset.records import FailureRecord, GrownRecord, RowRecord
from .events import CommitDone
from .instructions import Commit, MoveRow, SwapRows


def apply_moves(writer: DatasetWriter, moves: Sequence[MoveRow | SwapRows]) -> None:
    """Gather rows on disk as the state machine's `RowMap.gather` said, in its order."""
    for m in moves:
        if isinstance(m, MoveRow):
            writer.move_row(m.src, m.dst)
        else:
            writer.swap_rows(m.a, m.b)


class Committer:
    """One commit at a time in its own thread; `running` is the id of the batch in it."""

    def __init__(self, writer: DatasetWriter) -> None:
        self.writer = writer
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tiffsink-commit")
        self._running: tuple[int, Future[float]] | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    @property
    def wake_fd(self) -> int:
        """Readable once the running commit has finished (until it is reaped)."""
        return self._wake_r

    @property
    def running(self) -> int | None:
        return None if self._running is None else self._running[0]

    def start(self, commit: Commit) -> None:
        """Gather the batch's rows (its moves), then commit it in the thread. A move's
        error (disk full) is raised here, and nothing is then running."""
        if self._running is not None:
            raise RuntimeError("a commit is already running")
        apply_moves(self.writer, commit.moves)
        fut = self._pool.submit(self._commit, commit.records, commit.failures, commit.grown)
        self._running = (commit.batch_id, fut)
        fut.add_done_callback(self._wake)  # runs once the outcome is set: reap finds it

    def _wake(self, _fut: Future[float]) -> None:
        with contextlib.suppress(OSError):  # a full pipe is already readable
            os.write(self._wake_w, b"\0")

    def wait(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for the running commit to finish (none: return)."""
        if self._running is not None:
            wait([self._running[1]], timeout_s)

    def _commit(
        self, records: list[RowRecord], failures: list[FailureRecord], grown: list[GrownRecord]
    ) -> float:
        t0 = time.monotonic()
        self.writer.commit(records, failures, grown)
        return (time.monotonic() - t0) * 1000

    def reap(self, wait: bool) -> CommitDone | None:
        """The finished commit, or None if none finished (or none runs, with `wait`).

        Its error is raised here, in the caller's thread, and the commit is forgotten:
        DatasetFullError means nothing was committed (the caller requeues its files); any
        other error has poisoned the writer.
        """
        if self._running is None:
            return None
        batch_id, fut = self._running
        if not wait and not fut.done():
            return None
        try:
            commit_ms = fut.result()
        finally:
            self._running = None
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 64)
        return CommitDone(batch_id, commit_ms)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1
