"""The dataset writer: append rows to `images.npy` and commit them through `index.sqlite`.

Commit protocol, in this order (docs/dataset.md):
  1. rows are written after the committed ones (invisible: the header and index say N),
  2. fdatasync(images.npy),
  3. one SQLite transaction inserts the batch's index rows: the commit point,
  4. the header's row count is rewritten in place.
Opening for writing recovers: bytes past the committed rows are cut and the header is
set to the index's count. An fsync error is never retried (after a failed fsync the page
cache may already have dropped the dirty pages, so a retry could "succeed" over lost
data): the writer is poisoned, the error propagates, the process ends and recovery runs
on restart.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence

import structlog

from ..config import ImageSpec
from ..errors import DatasetError, DatasetFullError, DatasetIOError
from ..testing import faults
from . import index, lock
from .index import FailureRecord, RowRecord
from .layout import Layout
from .lookup import Lookup
from .meta import check_spec, new_meta
from .rows import RowFile, os_error_name

log = structlog.get_logger("tiffsink")


class DatasetWriter:
    """The one writer of a dataset folder (it holds the flock while open).

    Used by the supervisor's main thread (rows, lookups) and its committer thread
    (`commit`), never both at once for the same rows: rows committed..cursor-1 are
    pending, written by the main thread and made durable by the committer.
    """

    def __init__(self, directory: str | os.PathLike[str], spec: ImageSpec) -> None:
        self.layout = Layout.of(directory)
        self.directory = self.layout.directory
        self.spec = spec
        self.row_bytes = spec.row_bytes
        self._poisoned: BaseException | None = None
        self.lookup = Lookup(self.layout)  # exactly-once checks, from the supervisor thread
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatasetError(self.directory, f"cannot create dataset folder: {e}") from e
        self._lock_fd = lock.acquire(self.layout)
        self._opened: list[Callable[[], None]] = [
            self.lookup.close,
            lambda: os.close(self._lock_fd),
        ]
        try:
            self._open()
        except BaseException:
            self._close_all()
            raise

    # -- opening and recovery -------------------------------------------------------
    def _open(self) -> None:
        self.rows = RowFile(self.layout.images, self.spec)
        self._opened.insert(0, self.rows.close)
        self.conn = index.connect(self.layout.index)
        self._opened.insert(0, self.conn.close)
        # No meta yet means creation never committed (a crash right after connect made
        # the file): the index is as good as absent.
        index.ensure_schema(self.conn)
        stored = index.read_meta(self.conn)
        if not stored:
            n_header = self.rows.header_rows()
            if n_header:
                raise DatasetError(
                    self.layout.index,
                    f"index is missing but {self.layout.images.name} holds {n_header} rows; "
                    "refusing to guess",
                )
            index.create(self.conn, new_meta(self.spec))
        else:
            check_spec(self.directory, stored, self.spec)
        self.recover()

    def recover(self) -> None:
        """Make images.npy agree with the index: cut uncommitted bytes, fix the header."""
        problem = index.continuity_problem(self.conn)
        if problem is not None:
            raise DatasetError(self.layout.index, problem)
        n = index.committed_rows(self.conn)
        want, have = self.rows.offset(n), self.rows.size()
        if have < want:
            raise DatasetError(
                self.layout.images,
                f"file holds {self.rows.rows_on_disk()} rows but the index committed {n}: "
                "committed data is missing (was fsync honoured?)",
            )
        header_n = self.rows.header_rows()
        if have > want:
            self.rows.cut(n)
        if header_n != n:
            self.rows.set_header_rows(n)
        if have > want or header_n != n:
            self.rows.sync()
        self.committed = n
        self.cursor = n  # next row to write; rows committed..cursor-1 are pending

    # -- pending rows (supervisor thread) ---------------------------------------------
    def _check(self) -> None:
        if self._poisoned is not None:
            raise DatasetError(
                self.directory, f"writer stopped after an I/O error: {self._poisoned}"
            )

    def write_row(self, data: memoryview | bytes) -> int:
        """Write one row after the pending ones (not yet visible); returns its row number."""
        self._check()
        row = self.cursor
        self.rows.write(row, data)
        self.cursor = row + 1
        return row

    def reserve(self, n: int) -> range:
        """Reserve the next `n` pending rows for others to write (the workers)."""
        self._check()
        start = self.cursor
        self.cursor += n
        return range(start, self.cursor)

    def swap_rows(self, a: int, b: int) -> None:
        """Exchange two pending rows (to gather a batch's rows before its commit)."""
        if not (self.committed <= a < self.cursor and self.committed <= b < self.cursor):
            raise ValueError("only pending rows can be swapped")
        self.rows.swap(a, b)

    def discard_pending(self) -> None:
        """Drop every pending row and give its disk space back: after a write failed, or
        when no reservation is left (only holes remain past the committed rows)."""
        self.cursor = self.committed
        self.rows.cut(self.committed)

    def move_row(self, src: int, dst: int) -> None:
        """Copy a pending row onto another pending row (to close a gap left by a failed file)."""
        if not (self.committed <= dst < self.cursor and self.committed <= src < self.cursor):
            raise ValueError("only pending rows can be moved")
        self.rows.copy(src, dst)

    def truncate_pending(self, cursor: int) -> None:
        """Forget pending rows from `cursor` on (they will be overwritten or cut)."""
        if not self.committed <= cursor <= self.cursor:
            raise ValueError("cursor outside pending rows")
        self.cursor = cursor

    # -- the commit (committer thread) --------------------------------------------------
    def commit(self, rows: Sequence[RowRecord], failures: Sequence[FailureRecord]) -> None:
        """Make pending rows committed..committed+len(rows)-1 and the failures durable."""
        self._check()
        expect = list(range(self.committed, self.committed + len(rows)))
        if [r.row for r in rows] != expect or self.committed + len(rows) > self.cursor:
            raise ValueError("commit must cover the first pending rows, in order")
        faults.crash_point("after_data_write")
        try:
            if rows:
                self.rows.sync_data()
            faults.crash_point("after_data_fsync")
            self._insert(rows, failures)
            faults.crash_point("after_index_commit")
            self.committed += len(rows)
            if rows:
                self.rows.set_header_rows(self.committed)
            faults.crash_point("after_header_rewrite")
        except (OSError, sqlite3.DatabaseError) as e:
            if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError):
                raise
            self._poisoned = e
            raise DatasetIOError(
                self.layout.images,
                f"{os_error_name(e)} while committing; not retried: "
                "the process must restart and recover",
            ) from e

    def _insert(self, rows: Sequence[RowRecord], failures: Sequence[FailureRecord]) -> None:
        try:
            index.insert(self.conn, rows, failures)
        except sqlite3.OperationalError as e:
            # SQLITE_FULL rolls the transaction back: nothing committed, retry later.
            if "full" in str(e).lower():
                raise DatasetFullError(self.layout.index, f"index: {e}") from e
            raise

    # -- closing ------------------------------------------------------------------------
    def close(self) -> None:
        """Cut pending rows (nothing else may have them) and release the lock."""
        if self._poisoned is None:
            try:
                if self.rows.size() > self.rows.offset(self.committed):
                    self.rows.cut(self.committed)
            except OSError as e:
                # Recovery cuts them at the next open; say so rather than stay silent.
                log.warning(
                    "dataset.close_failed",
                    path=str(self.layout.images),
                    step="cut pending rows",
                    detail=os_error_name(e),
                )
        self._close_all()

    def _close_all(self) -> None:
        """Close every handle opened so far, newest first; failures are logged, not raised."""
        while self._opened:
            closer = self._opened.pop(0)
            try:
                closer()
            except Exception as e:
                log.warning(
                    "dataset.close_failed",
                    path=str(self.directory),
                    step="close handle",
                    detail=os_error_name(e),
                )

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
