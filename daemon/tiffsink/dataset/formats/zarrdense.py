"""The zarr backend without compression: workers write rows in place in their shards.

Every row has a fixed place in a fixed-size shard (`dense.py`), so the protocol is the
npy one: workers write pending rows at their final place, invisible because they lie
past zarr.json's shape; the commit fdatasyncs the shards it touched (and the folders of
new ones); the index transaction commits; then the shape is raised. Nothing is copied
and no shard is rewritten, so a reader never sees a shard change under it: the bytes of
committed rows and the index never change once written.

Compressed rows vary in size, so compressed datasets keep `ZarrStore`'s whole-shard
rewrites.
"""

from __future__ import annotations

from pathlib import Path

from ...config import ImageSpec, Storage
from ...errors import DatasetError
from ..layout import Layout
from ..rows import fsync_dir
from .dense import DenseShards
from .sink import SinkSpec
from .zarrv3 import ZarrStore


class DenseZarrStore(ZarrStore):
    """images.zarr with `compression = "none"`: rows written in place by the workers."""

    def __init__(self, layout: Layout, spec: ImageSpec, storage: Storage) -> None:
        super().__init__(layout, spec, storage)
        self.pending_path = self.array  # where workers write: what write errors name
        self.slot_bytes = spec.row_bytes
        self.shards = DenseShards(self.array, self.S, spec.row_bytes, self.ndim)

    def _open_pending(self) -> None:
        """No pending file: pending rows sit in their shards (one from an older layout
        of this format is removed)."""
        self.layout.pending.unlink(missing_ok=True)

    def sink(self) -> SinkSpec:
        return SinkSpec(str(self.array), self.storage, self.spec.row_bytes, self.ndim)

    def offset(self, row: int) -> int:
        return row * self.spec.row_bytes

    # -- recovery ---------------------------------------------------------------------
    def _recover_last(self, n: int) -> None:
        """A partly filled last shard is dense, with nothing past its committed rows: one
        written whole elsewhere (by the cluster's tasks) is laid out again."""
        s, k = divmod(n, self.S)
        if not k:
            if n:
                self._check_full(s - 1)
            return
        if self.shards.is_dense(s):
            if self.shards.data_after(s, k):
                self.shards.clear_after(s, k)
            return
        chunks = self._read_shard(s)
        kept = [bytes(c) for c in chunks[:k] if c is not None]
        if len(kept) < k:
            raise DatasetError(self.shard_path(s), f"holds {len(kept)} of its {k} committed rows")
        self.shards.rewrite(self.layout.tmp, s, kept)
        fsync_dir(self.shard_path(s).parent)

    # -- pending rows -------------------------------------------------------------------
    def cut_pending(self, committed: int) -> None:
        """Only while no worker writes: delete shards holding no committed row, clear the
        slots past the committed rows in the last one."""
        s, k = divmod(committed, self.S)
        self._delete_shards_after(s if k else s - 1)
        if k and self.shards.is_dense(s) and self.shards.data_after(s, k):
            self.shards.clear_after(s, k)

    def has_pending(self, committed: int) -> bool:
        s, k = divmod(committed, self.S)
        if self._shards_after(s if k else s - 1):
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
                path = self.shard_path(s)
                # Up to the array's folder, which gained c/ with the first shard.
                dirs.update(path.parents[i] for i in range(self.ndim + 1))
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(d)

    def publish(self, n: int) -> None:
        self._publish_shape(n)
