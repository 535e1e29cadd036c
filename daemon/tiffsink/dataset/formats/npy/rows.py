"""`images.npy` as a file of fixed-size rows behind a fixed-size, rewritable header.

`RowFile` owns the file descriptor and knows byte offsets; it knows nothing about which
rows are committed (the writer decides that from the index). Writes past the committed
rows are invisible to readers until the header and index say otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

from ....config import ImageSpec
from ....errors import DatasetError, DatasetFullError
from ...fsio import FULL, fsync_dir, os_error_name, pwrite_all
from . import header


class RowFile:
    """Rows of `spec` in one .npy file: create, check, write, cut, sync.

    Owned by the DatasetWriter; its fd is used by the main thread (writes) and the
    committer thread (fdatasync, header), never for the same rows at once.
    """

    def __init__(self, path: Path, spec: ImageSpec) -> None:
        self.path, self.spec = path, spec
        self.row_bytes = spec.row_bytes
        if not path.exists():
            self._create()
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        self._count_off = header.count_offset(spec.row_shape, spec.dtype)

    def _create(self) -> None:
        """Create an empty .npy atomically: it is valid from the instant it has its name."""
        tmp = self.path.with_suffix(".npy.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, header.build(0, self.spec.row_shape, self.spec.dtype))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)

    def header_rows(self) -> int:
        """N as the header states it, after checking the header matches the spec."""
        head = os.pread(self.fd, header.HEADER_BYTES, 0)
        try:
            n, shape, descr = header.parse(head)
        except (ValueError, SyntaxError) as e:
            raise DatasetError(self.path, f"bad header: {e}") from e
        want = header.descr(self.spec.dtype)
        if shape != self.spec.row_shape or descr != want:
            raise DatasetError(
                self.path,
                f"header says rows of {shape} {descr}, config says {self.spec.row_shape} {want}",
            )
        return n

    def set_header_rows(self, n: int) -> None:
        header.write_count(self.fd, n, self._count_off)

    def offset(self, row: int) -> int:
        return header.HEADER_BYTES + row * self.row_bytes

    def rows_on_disk(self) -> int:
        """Whole rows the file holds (committed or not)."""
        return (os.fstat(self.fd).st_size - header.HEADER_BYTES) // self.row_bytes

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def write(self, row: int, data: memoryview | bytes) -> None:
        """Write one row at its place; ENOSPC/EDQUOT become DatasetFullError."""
        if len(data) != self.row_bytes:
            raise ValueError(f"row is {len(data)} bytes, expected {self.row_bytes}")
        try:
            pwrite_all(self.fd, memoryview(data), self.offset(row))
        except OSError as e:
            if e.errno in FULL:
                raise DatasetFullError(self.path, f"{os_error_name(e)} writing rows") from e
            raise

    def cut(self, rows: int) -> None:
        """Make the file exactly `rows` rows long."""
        os.ftruncate(self.fd, self.offset(rows))

    def sync_data(self) -> None:
        os.fdatasync(self.fd)

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)
