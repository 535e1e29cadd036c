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

import contextlib
import errno
import fcntl
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__, failpoints, index, npyhead
from .config import ImageSpec
from .errors import (
    DatasetError,
    DatasetFullError,
    DatasetIOError,
    DatasetLockedError,
    SpecMismatchError,
)
from .index import FailureRecord, RowRecord

_FULL = (errno.ENOSPC, errno.EDQUOT)

IMAGES = "images.npy"
INDEX = "index.sqlite"
LOCK = "writer.lock"


def _name(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno:
        return f"{errno.errorcode.get(e.errno, 'errno ' + str(e.errno))} ({e.strerror})"
    return f"{type(e).__name__}: {e}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def acquire_lock(directory: Path) -> int:
    """Take the single-writer lock (flock: released by the kernel if we are killed)."""
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raw = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise DatasetLockedError(directory, int(raw) if raw.isdigit() else None) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def lock_holder(directory: Path) -> int | None:
    """PID of the process holding the writer lock, or None when nobody does."""
    try:
        fd = os.open(directory / LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(raw) if raw.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def spec_meta(spec: ImageSpec) -> dict[str, Any]:
    return {"image": spec.identity(), "format_version": index.FORMAT_VERSION}


def check_spec(directory: Path, stored: dict[str, Any], spec: ImageSpec) -> None:
    have, want = stored.get("image", {}), spec.identity()
    diffs = {k: (have.get(k), want[k]) for k in want if have.get(k) != want[k]}
    if diffs:
        raise SpecMismatchError(directory, diffs)


class DatasetWriter:
    """The one writer of a dataset directory; see the module docstring for the protocol."""

    def __init__(self, directory: str | os.PathLike[str], spec: ImageSpec) -> None:
        self.directory = Path(directory)
        self.spec = spec
        self.row_bytes = spec.row_bytes
        self._poisoned: BaseException | None = None
        self._lookup: sqlite3.Connection | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatasetError(self.directory, f"cannot create dataset folder: {e}") from e
        self._lock_fd = acquire_lock(self.directory)
        try:
            self._open()
        except BaseException:
            if hasattr(self, "conn"):
                self.conn.close()
            if hasattr(self, "_fd"):
                os.close(self._fd)
            os.close(self._lock_fd)
            raise

    # -- opening and recovery -------------------------------------------------------
    def _open(self) -> None:
        images, idx = self.directory / IMAGES, self.directory / INDEX
        if not images.exists():
            self._create_images(images)
        self._fd = os.open(images, os.O_RDWR | os.O_CLOEXEC)
        self.conn = index.connect(idx)
        # No meta yet means creation never committed (a crash right after connect made
        # the file): the index is as good as absent.
        self.conn.executescript(index.SCHEMA)
        fresh_index = not index.read_meta(self.conn)
        if fresh_index:
            n_header = self._header()[0]
            if n_header:
                raise DatasetError(
                    idx, f"index is missing but {IMAGES} holds {n_header} rows; refusing to guess"
                )
            meta = {
                **spec_meta(self.spec),
                "tiffsink_version": __version__,
                "created_at": index.now(),
            }
            index.create(self.conn, meta)
        else:
            check_spec(self.directory, index.read_meta(self.conn), self.spec)
        self._count_off = npyhead.count_offset(self.spec.row_shape, self.spec.dtype)
        self.recover()

    def _create_images(self, images: Path) -> None:
        """Create an empty .npy atomically: it is valid from the instant it has its name."""
        tmp = images.with_suffix(".npy.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, npyhead.build(0, self.spec.row_shape, self.spec.dtype))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, images)
        _fsync_dir(self.directory)

    def _header(self) -> tuple[int, tuple[int, ...], str]:
        head = os.pread(self._fd, npyhead.HEADER_BYTES, 0)
        try:
            n, shape, descr = npyhead.parse(head)
        except (ValueError, SyntaxError) as e:
            raise DatasetError(self.directory / IMAGES, f"bad header: {e}") from e
        if shape != self.spec.row_shape or descr != npyhead.descr(self.spec.dtype):
            raise DatasetError(
                self.directory / IMAGES,
                f"header says rows of {shape} {descr}, config says "
                f"{self.spec.row_shape} {npyhead.descr(self.spec.dtype)}",
            )
        return n, shape, descr

    def recover(self) -> None:
        """Make images.npy agree with the index: cut uncommitted bytes, fix the header."""
        n = index.committed_rows(self.conn)
        (count,) = self.conn.execute("SELECT COUNT(*) FROM images").fetchone()
        if count != n:
            raise DatasetError(
                self.directory / INDEX, f"rows are not continuous: {count} rows, max row {n - 1}"
            )
        want = npyhead.HEADER_BYTES + n * self.row_bytes
        have = os.fstat(self._fd).st_size
        if have < want:
            raise DatasetError(
                self.directory / IMAGES,
                f"file holds {(have - npyhead.HEADER_BYTES) // self.row_bytes} rows but the index "
                f"committed {n}: committed data is missing (was fsync honoured?)",
            )
        header_n = self._header()[0]
        if have > want:
            os.ftruncate(self._fd, want)
        if header_n != n:
            npyhead.write_count(self._fd, n, self._count_off)
        if have > want or header_n != n:
            os.fsync(self._fd)
        self.committed = n
        self.cursor = n  # next row to write; rows committed..cursor-1 are pending

    # -- writing ----------------------------------------------------------------------
    def _check(self) -> None:
        if self._poisoned is not None:
            raise DatasetError(
                self.directory, f"writer stopped after an I/O error: {self._poisoned}"
            )

    def _offset(self, row: int) -> int:
        return npyhead.HEADER_BYTES + row * self.row_bytes

    def write_row(self, data: memoryview | bytes) -> int:
        """Write one row after the pending ones (not yet visible); returns its row number."""
        self._check()
        if len(data) != self.row_bytes:
            raise ValueError(f"row is {len(data)} bytes, expected {self.row_bytes}")
        row = self.cursor
        off = self._offset(row)
        view = memoryview(data)
        try:
            while view:
                n = os.pwrite(self._fd, view, off)
                view, off = view[n:], off + n
        except OSError as e:
            if e.errno in _FULL:
                raise DatasetFullError(self.directory / IMAGES, f"{_name(e)} writing rows") from e
            raise
        self.cursor = row + 1
        return row

    def discard_pending(self) -> None:
        """Drop every pending row and give its disk space back (after a write failed)."""
        self.cursor = self.committed
        os.ftruncate(self._fd, self._offset(self.committed))

    def move_row(self, src: int, dst: int) -> None:
        """Copy a pending row onto another pending row (to close a gap left by a failed file)."""
        if not (self.committed <= dst < self.cursor and self.committed <= src < self.cursor):
            raise ValueError("only pending rows can be moved")
        data = os.pread(self._fd, self.row_bytes, self._offset(src))
        os.pwrite(self._fd, data, self._offset(dst))

    def truncate_pending(self, cursor: int) -> None:
        """Forget pending rows from `cursor` on (they will be overwritten or cut)."""
        if not self.committed <= cursor <= self.cursor:
            raise ValueError("cursor outside pending rows")
        self.cursor = cursor

    def commit(self, rows: Sequence[RowRecord], failures: Sequence[FailureRecord]) -> None:
        """Make pending rows committed..committed+len(rows)-1 and the failures durable."""
        self._check()
        expect = list(range(self.committed, self.committed + len(rows)))
        if [r.row for r in rows] != expect or self.committed + len(rows) > self.cursor:
            raise ValueError("commit must cover the first pending rows, in order")
        failpoints.hit("after_data_write")
        try:
            if rows:
                os.fdatasync(self._fd)
            failpoints.hit("after_data_fsync")
            try:
                index.insert(self.conn, rows, failures)
            except sqlite3.OperationalError as e:
                # SQLITE_FULL rolls the transaction back: nothing committed, retry later.
                if "full" in str(e).lower():
                    raise DatasetFullError(self.directory / INDEX, f"index: {e}") from e
                raise
            failpoints.hit("after_index_commit")
            self.committed += len(rows)
            if rows:
                npyhead.write_count(self._fd, self.committed, self._count_off)
            failpoints.hit("after_header_rewrite")
        except (OSError, sqlite3.DatabaseError) as e:
            if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError):
                raise
            self._poisoned = e
            raise DatasetIOError(
                self.directory / IMAGES,
                f"{_name(e)} while committing; not retried: the process must restart and recover",
            ) from e

    def known(self, versions: Sequence[tuple[str, int, int]]) -> set[tuple[str, int, int]]:
        """Versions with committed rows or failures (a separate connection, so lookups
        from the supervisor never wait on a commit running in the committer thread)."""
        if self._lookup is None:
            self._lookup = index.connect(self.directory / INDEX, readonly=True)
            self._lookup.execute("PRAGMA query_only=1")
        return index.known_versions(self._lookup, versions)

    def ingested(self, source: str, size: int, mtime_ns: int) -> bool:
        """Whether this version has rows (not just a failure record)."""
        self.known([])
        assert self._lookup is not None
        q = "SELECT 1 FROM images WHERE source=? AND size=? AND mtime_ns=? LIMIT 1"
        return self._lookup.execute(q, (source, size, mtime_ns)).fetchone() is not None

    def close(self) -> None:
        """Cut pending rows (nothing else may have them) and release the lock."""
        with contextlib.suppress(Exception):
            end = self._offset(self.committed)
            if self._poisoned is None and os.fstat(self._fd).st_size > end:
                os.ftruncate(self._fd, end)
        with contextlib.suppress(Exception):
            self.conn.close()
        if self._lookup is not None:
            with contextlib.suppress(Exception):
                self._lookup.close()
        with contextlib.suppress(Exception):
            os.close(self._fd)
        with contextlib.suppress(Exception):
            os.close(self._lock_fd)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
