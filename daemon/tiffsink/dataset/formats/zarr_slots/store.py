"""The fixed-slot zarr store (uncompressed, or zstd): workers write rows in place.

Every row has a fixed place in a fixed-size shard (`shards.py`), so the protocol is the
npy one: workers write pending rows at their final place, invisible because they lie
past zarr.json's shape; the commit fdatasyncs the shards it touched (and the folders of
new ones); the index transaction commits; then the shape is raised. Nothing is copied
and no shard is rewritten, so a reader never sees a shard change under it: the bytes of
committed rows and the index never change once written. Shards a cluster task writes
whole have the same layout (`ShardWriter` with fixed slots), so taking them in costs
nothing. A zstd dataset an older version wrote (packed shards, `pending.rows`) is taken
over as it is: its packed full shards stay, its partly filled last one is laid out in
slots again on opening.
"""

from __future__ import annotations

from pathlib import Path

from ....config import ImageSpec, Storage
from ...fsio import fsync_dirs
from ...layout import Layout
from ..store import RowStore
from ..zarrcommon import codec
from ..zarrcommon.array import ZarrArray
from ..zarrcommon.wholeshard import ShardWriter
from .shards import DenseShards
from .sink import SlotSinkSpec


class SlotZarrStore(RowStore):
    """images.zarr whose codec fills fixed slots: rows written in place by the workers."""

    def __init__(self, layout: Layout, spec: ImageSpec, storage: Storage) -> None:
        super().__init__(spec, storage)
        self.array = ZarrArray(layout, spec, storage)
        self.path = layout.zarr
        self.sink_path = self.array.path  # where workers write: what write errors name
        slot = codec.fixed_slot_bytes(storage, spec.row_bytes)
        if slot is None:
            raise ValueError(f"{storage.compression} chunks cannot fill fixed slots")
        self.slot_bytes = slot
        self.S = storage.shard_rows
        self.shards = DenseShards(self.array.path, self.S, slot, self.array.ndim)
        self.whole = self.array.shard_writer(slot_bytes=slot)
        # No pending file: pending rows sit in their shards. One an older version of
        # this format kept is removed.
        layout.pending.unlink(missing_ok=True)

    def sink(self) -> SlotSinkSpec:
        return SlotSinkSpec(
            str(self.array.path), self.S, self.slot_bytes, self.array.ndim, self.storage
        )

    def watched(self) -> tuple[list[Path], list[Path]]:
        return self.array.watched()

    def claimed_rows(self) -> int:
        return self.array.claimed_rows()

    def shard_writer(self) -> ShardWriter:
        return self.whole

    def adopt(self, first: int, count: int) -> None:
        """Shards written whole have the in-place layout: nothing to take in."""

    # -- recovery ---------------------------------------------------------------------
    def recover(self, n: int) -> None:
        """Cut shards past the committed rows, clear slots past them in the last one,
        raise a lagging shape."""
        claimed = self.array.cut_beyond(n)
        self._recover_last(n)
        if claimed != n:
            self.publish(n)

    def _recover_last(self, n: int) -> None:
        """A partly filled last shard keeps its slots, with nothing past its committed rows."""
        s, k = divmod(n, self.S)
        if not k:
            if n:
                self.whole.check_full(s - 1)
            return
        if self.shards.is_dense(s):
            if self.shards.data_after(s, k):
                self.shards.clear_after(s, k)
            return
        # Packed (by a cluster task of an older version, or an older version's zstd
        # commit): laid out in slots again.
        self.whole.write(s, self.whole.kept(s, k))

    # -- pending rows -------------------------------------------------------------------
    def offset(self, row: int) -> int:
        return row * self.slot_bytes

    def cut_pending(self, committed: int) -> None:
        """Only while no worker writes: delete shards holding no committed row, clear the
        slots past the committed rows in the last one."""
        s, k = divmod(committed, self.S)
        self.array.delete_shards_after(s if k else s - 1)
        if k and self.shards.is_dense(s) and self.shards.data_after(s, k):
            self.shards.clear_after(s, k)

    def has_pending(self, committed: int) -> bool:
        s, k = divmod(committed, self.S)
        if self.array.shards_after(s if k else s - 1):
            return True
        return bool(k) and self.shards.is_dense(s) and self.shards.data_after(s, k)

    def read_slot(self, row: int) -> bytes:
        return self.shards.read(self.slot_bytes, self.offset(row))

    def write_slot(self, row: int, data: bytes) -> None:
        self.shards.write(memoryview(data), self.offset(row))

    # -- the commit ---------------------------------------------------------------------
    def make_durable(self, first: int, count: int) -> None:
        """fdatasync every shard rows first.. touch; fsync the folders of new shards."""
        if not count:
            return
        dirs: set[Path] = set()
        for s in range(first // self.S, (first + count - 1) // self.S + 1):
            self.shards.sync(s)
            if s * self.S >= first:  # no committed row yet: its folder entries are new
                path = self.array.shard_path(s)
                # Up to the array's folder, which gained c/ with the first shard.
                dirs.update(path.parents[i] for i in range(self.array.ndim + 1))
        fsync_dirs(dirs)

    def publish(self, n: int) -> None:
        self.array.publish_shape(n)

    def close(self) -> None:
        pass
