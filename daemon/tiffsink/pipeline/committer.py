"""The committer thread: makes the head batch durable while the next ones decode.

fsync of a batch's rows takes long enough that doing it in the supervisor's thread would
stall dispatch; so at most one commit runs in this one thread, and its outcome (or its
error: disk full, EIO) is collected back in the supervisor's thread by `reap`.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

from ..dataset import DatasetWriter
from ..dataset.index import FailureRecord, GrownRecord, RowRecord, now
from ..errors import DatasetFullError
from .jobs import Batch, CommitInfo
from .rowmap import Row


def _records(rows: list[Row], at: float) -> list[RowRecord]:
    """The index rows of a batch: one per gathered row, in row order."""
    return [
        RowRecord(
            row.pos,
            row.job.cand.path,
            row.info.page,
            *(row.job.version or (-1, -1)),
            row.job.content_hash,
            row.info.height,
            row.info.width,
            row.info.dtype,
            row.info.channels,
            at,
            row.info.meta,
            row.info.digest,
        )
        for row in rows
    ]


def _grown(batch: Batch, at: float) -> list[GrownRecord]:
    """The batch's file versions that began with their path's committed pages."""
    return [
        GrownRecord(j.cand.path, *j.version, *j.prior.base, j.grown_from, j.pages_total, at)
        for j in batch.jobs
        if j.grown_from and j.prior is not None and j.version is not None
        if j.failure is None and not j.skipped
    ]


def _info(batch: Batch, rows: list[Row], first_row: int, commit_ms: float) -> CommitInfo:
    jobs = batch.jobs
    return CommitInfo(
        batch.id,
        len(rows),
        [
            (j.cand, j.version, j.pages_total)
            for j in jobs
            if j.version is not None and j.failure is None and not j.skipped
        ],
        [(j.cand, j.failure) for j in jobs if j.failure is not None],
        sum(1 for j in jobs if j.skipped),
        commit_ms,
        (time.monotonic() - batch.started) * 1000,
        first_row,
    )


class Committer:
    """One commit at a time in its own thread; `running` is the batch being committed."""

    def __init__(self, writer: DatasetWriter) -> None:
        self.writer = writer
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tiffsink-commit")
        self._running: tuple[Batch, list[Row], int, Future[float]] | None = None

    @property
    def running(self) -> Batch | None:
        return None if self._running is None else self._running[0]

    def start(self, batch: Batch, rows: list[Row]) -> None:
        """Hand a resolved batch over; `rows` are gathered as the next pending rows."""
        if self._running is not None:
            raise RuntimeError("a commit is already running")
        failures = [j.failure for j in batch.jobs if j.failure is not None]
        first = self.writer.committed
        at = now()
        fut = self._pool.submit(self._commit, _records(rows, at), failures, _grown(batch, at))
        self._running = (batch, rows, first, fut)

    def _commit(
        self, records: list[RowRecord], failures: list[FailureRecord], grown: list[GrownRecord]
    ) -> float:
        t0 = time.monotonic()
        self.writer.commit(records, failures, grown)
        return (time.monotonic() - t0) * 1000

    def reap(self, wait: bool) -> tuple[CommitInfo, list[Row]] | None:
        """The finished commit's outcome, or None if none finished (or `wait`ed for).

        Its error is raised here, in the caller's thread. After DatasetFullError the batch
        stays `running`, so the caller can requeue its files and then `drop` it.
        """
        if self._running is None:
            return None
        batch, rows, first, fut = self._running
        if not wait and not fut.done():
            return None
        try:
            commit_ms = fut.result()
        except DatasetFullError:
            raise  # nothing committed: the caller requeues this batch's files, then drops it
        except BaseException:
            self._running = None
            raise
        self._running = None
        return _info(batch, rows, first, commit_ms), rows

    def drop(self) -> None:
        """Forget a commit that failed (after its files were requeued)."""
        self._running = None

    def close(self) -> None:
        self._pool.shutdown(wait=True)
