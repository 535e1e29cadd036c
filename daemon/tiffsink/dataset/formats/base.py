"""The storage backend ABC: where a dataset's rows live, one implementation per format.

Every format keeps the same commit protocol (docs/dataset.md), driven by the writer:
  1. rows are written into pending slots past the committed rows (by the workers, at the
     byte offsets `offset` gives), invisible to readers;
  2. `make_durable` puts them where readers will look and fsyncs them;
  3. the writer's index transaction is the commit point;
  4. `publish` raises the row count readers see (npy header, zarr.json shape).
`recover` makes the store agree with the index's committed count on open.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

from ...config import ImageSpec, Storage
from .sink import SinkSpec


class RowStore(ABC):
    """The rows of one dataset; owned by its DatasetWriter (supervisor main thread for
    pending slots, committer thread for `make_durable` and `publish`)."""

    path: Path  # what error messages name: images.npy or images.zarr
    pending_path: Path  # the file of pending slots workers write into
    slot_bytes: int

    def __init__(self, spec: ImageSpec, storage: Storage) -> None:
        self.spec, self.storage = spec, storage
        self.pending_fd = -1

    def sink(self) -> SinkSpec:
        return SinkSpec(str(self.pending_path), self.storage, self.spec.row_bytes)

    @abstractmethod
    def claimed_rows(self) -> int:
        """The row count the store itself states (to refuse rows without an index)."""

    @abstractmethod
    def recover(self, n: int) -> None:
        """Make the store hold exactly the `n` committed rows, and no pending slots."""

    @abstractmethod
    def offset(self, row: int) -> int:
        """Byte offset in `pending_path` of a pending row's slot."""

    @abstractmethod
    def cut_pending(self, committed: int) -> None:
        """Drop every pending slot and give its space back."""

    @abstractmethod
    def has_pending(self, committed: int) -> bool:
        """Whether bytes past the committed rows are on disk (close cuts them)."""

    @abstractmethod
    def make_durable(self, first: int, count: int) -> None:
        """Steps 1-2: pending rows first..first+count-1 durable where readers will look."""

    @abstractmethod
    def publish(self, n: int) -> None:
        """Step 4, after the index commit: readers may now see `n` rows."""

    def read_slot(self, row: int) -> bytes:
        """A pending row's slot, as its worker wrote it."""
        return os.pread(self.pending_fd, self.slot_bytes, self.offset(row))

    def write_slot(self, row: int, data: bytes) -> None:
        os.pwrite(self.pending_fd, data, self.offset(row))

    def swap(self, a: int, b: int) -> None:
        sa, sb = self.read_slot(a), self.read_slot(b)
        self.write_slot(b, sa)
        self.write_slot(a, sb)

    def copy(self, src: int, dst: int) -> None:
        self.write_slot(dst, self.read_slot(src))

    def close(self) -> None:
        if self.pending_fd >= 0:
            os.close(self.pending_fd)
            self.pending_fd = -1
