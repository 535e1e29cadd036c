"""The committer thread: makes the head batch durable while the next ones decode.

fsync of a batch's rows takes long enough that doing it in the supervisor's thread would
stall dispatch; so at most one commit runs in this one thread, and its outcome (or its
error: disk full, EIO) is collected back in the supervisor's thread by `reap`. It only
executes the state machine's `Commit` instructions: the row moves first, in the calling
(main) thread, while no worker writes those rows, then the writer's commit in the thread.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

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
        return CommitDone(batch_id, commit_ms)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
