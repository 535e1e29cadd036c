"""The committer thread: makes the head batch durable while the next ones decode.

fsync of a batch's rows takes long enough that doing it in the supervisor's thread would
stall dispatch; so at most one commit runs in this one thread, and its outcome (or its
error: disk full, EIO) is collected back in the supervisor's thread by `reap`. It only
executes the state machine's `Commit` instructions: the row moves first, in the calling
(main) thread, while no worker writes those rows, then the writer's commit in the thread.
A finished commit writes a byte to `wake_fd`, which the supervisor's poll watches, so the
next commit starts at once instead of at the next poll timeout (which, with batches of
one file, had capped the rate at one commit per timeout).

Where the store allows it (`publish_any_time`), step 4, raising the readers' count, runs
in a second thread: the next commit's fsync need not wait for it, and raises queued
behind a newer one are skipped (the newer one raises the count further). A zarr.json
rename cost a fifth of a one-file commit.
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
        self._raiser: ThreadPoolExecutor | None = None
        if writer.store.publish_any_time:
            self._raiser = ThreadPoolExecutor(1, thread_name_prefix="tiffsink-raise")
        self._raises = 0  # raises queued so far: each one skips itself unless the last
        self._raise_error: BaseException | None = None

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
        if self._raiser is not None:
            fut.add_done_callback(self._queue_raise)
        fut.add_done_callback(self._wake)  # runs once the outcome is set: reap finds it

    def _queue_raise(self, _fut: Future[float]) -> None:
        assert self._raiser is not None
        self._raises += 1  # commits run one at a time: so do these callbacks
        self._raiser.submit(self._raise, self._raises)

    def _raise(self, seq: int) -> None:
        """Raise the readers' count to the committed rows, unless a newer raise is queued."""
        if seq != self._raises:
            return
        try:
            self.writer.publish_committed()
        except BaseException as e:  # the writer is poisoned: raised at the next reap
            self._raise_error = e

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
        self.writer.commit(records, failures, grown, publish=self._raiser is None)
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
        self._raise_failed()
        return CommitDone(batch_id, commit_ms)

    def _raise_failed(self) -> None:
        err, self._raise_error = self._raise_error, None
        if err is not None:
            raise err

    def close(self) -> None:
        """Wait for the commit in flight and the last raise of the count."""
        self._pool.shutdown(wait=True)
        if self._raiser is not None:
            self._raiser.shutdown(wait=True)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1
        self._raise_failed()
