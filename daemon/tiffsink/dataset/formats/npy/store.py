"""The npy store: rows at their final place in `images.npy`, behind a rewritable header.

A pending row's slot is its final row, so workers write straight into the file; durable
is one fdatasync; publishing is one pwrite of the header's row count.
"""

from __future__ import annotations

import os
from pathlib import Path

from ....config import ImageSpec, Storage
from ....errors import DatasetError
from ...layout import Layout
from ..store import RowStore
from .rows import RowFile
from .sink import NpySinkSpec


class NpyStore(RowStore):
    """images.npy through a RowFile."""

    def __init__(self, layout: Layout, spec: ImageSpec, storage: Storage) -> None:
        super().__init__(spec, storage)
        self.path = self.sink_path = layout.images
        self.slot_bytes = spec.row_bytes
        self.rows = RowFile(layout.images, spec)
        self.pending_fd = self.rows.fd

    def sink(self) -> NpySinkSpec:
        return NpySinkSpec(str(self.path))

    def watched(self) -> tuple[list[Path], list[Path]]:
        return [self.path], []

    def claimed_rows(self) -> int:
        return self.rows.header_rows()

    def recover(self, n: int) -> None:
        """Cut uncommitted bytes, fix the header."""
        want, have = self.rows.offset(n), self.rows.size()
        if have < want:
            raise DatasetError(
                self.path,
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

    def offset(self, row: int) -> int:
        return self.rows.offset(row)

    def cut_pending(self, committed: int) -> None:
        self.rows.cut(committed)

    def has_pending(self, committed: int) -> bool:
        return self.rows.size() > self.rows.offset(committed)

    def make_durable(self, first: int, count: int) -> None:
        if count:
            self.rows.sync_data()

    def publish(self, n: int) -> None:
        self.rows.set_header_rows(n)

    def read_slot(self, row: int) -> bytes:
        return os.pread(self.pending_fd, self.slot_bytes, self.offset(row))

    def write_slot(self, row: int, data: bytes) -> None:
        os.pwrite(self.pending_fd, data, self.offset(row))

    def close(self) -> None:
        if self.pending_fd >= 0:
            self.rows.close()
            self.pending_fd = -1
