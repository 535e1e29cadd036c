"""The writer's side of a format: where a dataset's rows live, one implementation per format.

Every format keeps the same commit protocol (docs/dataset.md), driven by the writer:
  1. rows are written into pending slots past the committed rows (by the workers, at the
     byte offsets `offset` gives), invisible to readers;
  2. `make_durable` puts them where readers will look and fsyncs them;
  3. the writer's index transaction is the commit point;
  4. `publish` raises the row count readers see (npy header, zarr.json shape).
`recover` makes the store agree with the index's committed count on open.

A format whose shards may be written whole elsewhere (`Format.whole_shards`: cluster
tasks) also hands out its `ShardWriter` and takes such shards in with `adopt` before
their commit; the others refuse both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from ...config import ImageSpec, Storage
from ...errors import DatasetError
from .sink import SinkSpec
from .zarrcommon.wholeshard import ShardWriter


class RowStore(ABC):
    """The rows of one dataset; owned by its DatasetWriter (supervisor main thread for
    pending slots, committer thread for `make_durable` and `publish`)."""

    path: Path  # what error messages name: images.npy or images.zarr
    sink_path: Path  # where workers write pending rows (a file or a folder): what their errors name
    slot_bytes: int  # the bytes of one pending slot

    def __init__(self, spec: ImageSpec, storage: Storage) -> None:
        self.spec, self.storage = spec, storage

    @abstractmethod
    def sink(self) -> SinkSpec:
        """What a worker needs to write pending rows (picklable: sent at spawn)."""

    @abstractmethod
    def watched(self) -> tuple[list[Path], list[Path]]:
        """(files, folders) whose deletion or replacement means the dataset is lost: the
        writer checks them before every commit (identity.py)."""

    @abstractmethod
    def claimed_rows(self) -> int:
        """The row count the store itself states (to refuse rows without an index)."""

    @abstractmethod
    def recover(self, n: int) -> None:
        """Make the store hold exactly the `n` committed rows, and no pending slots."""

    @abstractmethod
    def offset(self, row: int) -> int:
        """Byte address of a pending row's slot, as the sink understands it."""

    @abstractmethod
    def cut_pending(self, committed: int) -> None:
        """Drop every pending slot and give its space back (only while no worker writes)."""

    @abstractmethod
    def has_pending(self, committed: int) -> bool:
        """Whether bytes past the committed rows are on disk (close cuts them)."""

    @abstractmethod
    def make_durable(self, first: int, count: int) -> None:
        """Steps 1-2: pending rows first..first+count-1 durable where readers will look."""

    # Whether `publish` only raises a count, so that it may run late, from another thread,
    # and skip counts (the committer then raises it beside the next commit); a store whose
    # publish completes its own make_durable says no.
    publish_any_time = True

    @abstractmethod
    def publish(self, n: int) -> None:
        """Step 4, after the index commit: readers may now see `n` rows."""

    @abstractmethod
    def read_slot(self, row: int) -> bytes:
        """A pending row's slot, as its worker wrote it."""

    @abstractmethod
    def write_slot(self, row: int, data: bytes) -> None:
        """Overwrite a pending row's slot (gathering a batch's rows)."""

    def swap(self, a: int, b: int) -> None:
        sa, sb = self.read_slot(a), self.read_slot(b)
        self.write_slot(b, sa)
        self.write_slot(a, sb)

    def copy(self, src: int, dst: int) -> None:
        self.write_slot(dst, self.read_slot(src))

    def shard_writer(self) -> ShardWriter:
        """The one path that makes a whole shard durable, for writers elsewhere."""
        raise DatasetError(self.path, "this format takes no whole-shard writes")

    def adopt(self, first: int, count: int) -> None:
        """Steps 1-2 done elsewhere: rows first..first+count-1 are in shards a
        `shard_writer` made durable; take them in before their commit."""
        raise DatasetError(self.path, "this format takes no whole-shard writes")

    @abstractmethod
    def close(self) -> None:
        """Release descriptors (no file is changed)."""
