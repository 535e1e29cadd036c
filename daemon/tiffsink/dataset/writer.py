"""The dataset writer: append rows to the dataset's store and commit them through `index.sqlite`.

Commit protocol, in this order, the same for every format (docs/dataset.md):
  1. rows are written into pending slots past the committed ones (invisible),
  2. the store makes them durable where readers will look (npy: fdatasync; zarr: whole
     shards written, fsynced and renamed into place),
  3. one SQLite transaction inserts the batch's index rows: the commit point,
  4. the store publishes the new row count (npy header; zarr.json shape).
Opening for writing recovers: what lies past the committed rows is cut and the published
count is set to the index's. Before each index transaction the writer checks that the
index and the rows' file are still the ones it opened (identity.py): a deleted or
replaced index stops the commit (DatasetLostError) instead of committing into the void.
An fsync error is never retried (after a failed fsync the page cache may already have
dropped the dirty pages, so a retry could "succeed" over lost data): the writer is
poisoned, the error propagates, the process ends and recovery runs on restart.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Sequence
from typing import NoReturn

import numpy as np
import structlog

from ..config import ImageSpec, Storage
from ..errors import DatasetError, DatasetFullError, DatasetIOError, DatasetLostError
from ..testing import faults
from . import index, lock
from .access import check_writable
from .closers import Closers
from .formats import RowSink, as_page
from .fsio import os_error_name
from .identity import OpenedFiles
from .layout import Layout
from .lookup import Lookup
from .opening import open_store
from .records import FailureRecord, GrownRecord, RowRecord

log = structlog.get_logger("tiffsink")


class DatasetWriter:
    """The one writer of a dataset folder (it holds the flock while open).

    Used by the supervisor's main thread (rows, lookups) and its committer thread
    (`commit`), never both at once for the same rows: rows committed..cursor-1 are
    pending, reserved by the main thread (the pipeline numbers them), written by its
    workers and made durable by the committer.
    """

    def __init__(
        self, directory: str | os.PathLike[str], spec: ImageSpec, storage: Storage | None = None
    ) -> None:
        self.layout = Layout.of(directory)
        self.directory = self.layout.directory
        self.spec, self.storage = spec, storage or Storage()
        self._sink: RowSink | None = None
        self.row_bytes = spec.row_bytes
        self._poisoned: BaseException | None = None
        self.lookup = Lookup(self.layout)  # exactly-once checks, from the supervisor thread
        check_writable(self.directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatasetError(self.directory, f"cannot create dataset folder: {e}") from e
        self._lock_fd = lock.acquire(self.layout)
        self._closers = Closers(self.directory)
        self._closers.push(lambda: os.close(self._lock_fd))
        self._closers.push(self.lookup.close)
        try:
            self._open()
        except BaseException:
            self._closers.close_all()
            raise

    # -- opening and recovery -------------------------------------------------------
    def _open(self) -> None:
        self.conn = index.connect(self.layout.index)
        self._closers.push(self.conn.close)
        self.store = open_store(self.layout, self.conn, self.spec, self.storage)
        self._closers.push(self.store.close)
        self.recover()
        files, folders = self.store.watched()
        self.opened = OpenedFiles([self.layout.index, *files], folders)
        self._closers.push(self.opened.close)

    def check_opened(self) -> None:
        """Raise DatasetLostError (and refuse all further commits) if the index or the rows'
        file was deleted or replaced since the open: two or three stat() calls."""
        if isinstance(self._poisoned, DatasetLostError):
            raise self._poisoned
        problem = self.opened.problem()
        if problem is not None:
            err = DatasetLostError(
                self.directory,
                f"{problem}; nothing more is committed and no source is moved or deleted",
            )
            self._poisoned = err
            raise err

    def recover(self) -> None:
        """Make the store agree with the index: cut what is uncommitted, fix the count."""
        problem = index.continuity_problem(self.conn)
        if problem is not None:
            raise DatasetError(self.layout.index, problem)
        n = index.committed_rows(self.conn)
        self.store.recover(n)
        self.committed = self.published = n
        self.cursor = n  # end of the pending rows: committed..cursor-1 may hold data

    # -- pending rows (supervisor thread) ---------------------------------------------
    def _check(self) -> None:
        if self._poisoned is not None:
            raise DatasetError(
                self.directory, f"writer stopped after an I/O error: {self._poisoned}"
            )

    def write_row(self, data: np.ndarray | bytes) -> int:
        """Write one row after the pending ones (not yet visible); returns its row number.

        The workers write their rows themselves (`RowSink`); this is for tools and tests.
        """
        self._check()
        page = as_page(data, self.spec)
        if self._sink is None:
            self._sink = self.store.sink().open()
            self._closers.push(self._sink.close)
        row = self.cursor
        try:
            self._sink.write(self.store.offset(row), self._sink.payload(page))
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DatasetFullError(self.store.path, f"{os_error_name(e)} writing rows") from e
            raise
        self.cursor = row + 1
        return row

    def offset(self, row: int) -> int:
        """The byte address of pending row `row`'s slot, as the store's sink takes it."""
        return self.store.offset(row)

    def reserve(self, end: int) -> None:
        """Pending rows up to `end` (exclusive) may now be written by others (the workers).
        The pipeline numbers them; the writer only bounds what swap, move and commit take."""
        self._check()
        self.cursor = max(self.cursor, end)

    def swap_rows(self, a: int, b: int) -> None:
        """Exchange two pending rows (to gather a batch's rows before its commit)."""
        if not (self.committed <= a < self.cursor and self.committed <= b < self.cursor):
            raise ValueError("only pending rows can be swapped")
        self.store.swap(a, b)

    def discard_pending(self) -> None:
        """Drop every pending row and give its disk space back: after a write failed, or
        when no reservation is left (only holes remain past the committed rows)."""
        self.cursor = self.committed
        self.store.cut_pending(self.committed)

    def move_row(self, src: int, dst: int) -> None:
        """Copy a pending row onto another pending row (to close a gap left by a failed file)."""
        if not (self.committed <= dst < self.cursor and self.committed <= src < self.cursor):
            raise ValueError("only pending rows can be moved")
        self.store.copy(src, dst)

    # -- the commit (committer thread) --------------------------------------------------
    def commit(
        self,
        rows: Sequence[RowRecord],
        failures: Sequence[FailureRecord],
        grown: Sequence[GrownRecord] = (),
        publish: bool = True,
    ) -> None:
        """Make pending rows committed..committed+len(rows)-1, the failures and the grown
        versions durable; with `publish`, raise the readers' count too (else
        `publish_committed` does, later)."""
        self._check()
        expect = list(range(self.committed, self.committed + len(rows)))
        if [r.row for r in rows] != expect or self.committed + len(rows) > self.cursor:
            raise ValueError("commit must cover the first pending rows, in order")
        faults.crash_point("after_data_write")
        try:
            self.store.make_durable(self.committed, len(rows))
        except (OSError, sqlite3.DatabaseError) as e:
            self._poison(e)
        self._finish(rows, failures, grown, publish)

    def commit_written(self, rows: Sequence[RowRecord], failures: Sequence[FailureRecord]) -> None:
        """Commit rows that others already made durable, whole shards written by a
        cluster's tasks through `store.shard_writer()`: the store takes them in
        (`adopt`), then steps 3 and 4. No row may be pending here."""
        self._check()
        if self.cursor != self.committed:
            raise ValueError("commit_written with rows pending")
        if [r.row for r in rows] != list(range(self.committed, self.committed + len(rows))):
            raise ValueError("commit must cover the rows after the committed ones, in order")
        self.cursor += len(rows)
        try:
            if rows:
                try:
                    self.store.adopt(self.committed, len(rows))
                except (OSError, sqlite3.DatabaseError) as e:
                    self._poison(e)
            self._finish(rows, failures)
        finally:
            if self.committed != self.cursor:  # nothing committed: nothing is pending either
                self.cursor = self.committed

    def _finish(
        self,
        rows: Sequence[RowRecord],
        failures: Sequence[FailureRecord],
        grown: Sequence[GrownRecord] = (),
        publish: bool = True,
    ) -> None:
        """Steps 3 (the index transaction: the commit point) and 4 (publish the count)."""
        self.check_opened()  # never commit into an index someone deleted or replaced
        try:
            faults.crash_point("after_data_fsync")
            self._insert(rows, failures, grown)
            faults.crash_point("after_index_commit")
            self.committed += len(rows)
        except (OSError, sqlite3.DatabaseError) as e:
            self._poison(e)
        if publish:
            self.publish_committed()

    def publish_committed(self) -> None:
        """Step 4: readers may now see every committed row. After commits made with
        `publish=False`, from any one thread at a time (stores that allow it)."""
        n = self.committed
        try:
            if n > self.published:
                self.store.publish(n)
                self.published = n
            faults.crash_point("after_header_rewrite")
        except OSError as e:
            self._poison(e)

    def _poison(self, e: BaseException) -> NoReturn:
        """An OSError or SQLite I/O error is not retried: the writer refuses further work
        and the process must restart and recover. Other SQLite errors (a constraint) are
        raised as they are: nothing was committed."""
        if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError):
            raise e
        self._poisoned = e
        raise DatasetIOError(
            self.store.path,
            f"{os_error_name(e)} while committing; not retried: "
            "the process must restart and recover",
        ) from e

    def _insert(
        self,
        rows: Sequence[RowRecord],
        failures: Sequence[FailureRecord],
        grown: Sequence[GrownRecord],
    ) -> None:
        try:
            index.insert(self.conn, rows, failures, grown)
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
                if self.store.has_pending(self.committed):
                    self.store.cut_pending(self.committed)
            except OSError as e:
                # Recovery cuts them at the next open; say so rather than stay silent.
                log.warning(
                    "dataset.close_failed",
                    path=str(self.store.path),
                    step="cut pending rows",
                    detail=os_error_name(e),
                )
        self._closers.close_all()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
