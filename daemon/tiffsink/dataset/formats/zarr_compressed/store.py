"""The compressed zarr store: encoded rows in `pending.rows`, committed as whole shards.

Pending rows are encoded chunks in slots of `pending.rows` (the workers compress them).
The commit assembles each shard the batch touches from the committed chunks it already
has (the tail, kept in memory) plus the new ones, and makes it durable through the one
whole-shard path (`ShardWriter`: tmp/, fsync, rename), so a reader or a crash sees the old
shard or the new one, never half of one; both hold every committed row. Then the index
commits, and only then is zarr.json's shape raised. Shape last: a zarr-python reader
never sees a row that is not committed, nor a fill-value row inside the shape. This
process, or a cluster task it hands the `ShardWriter` to, is the only writer of every
shard (zarr-python issue 3682: concurrent partial shard writes lose data).
"""

from __future__ import annotations

from pathlib import Path

from ....config import ImageSpec, Storage
from ....errors import DatasetError
from ...fsio import Buffer, fsync_dirs
from ...layout import Layout
from ..store import RowStore
from ..zarrcommon.array import ZarrArray
from ..zarrcommon.wholeshard import ShardWriter
from .pending import PendingSlots
from .sink import CompressedSinkSpec


class CompressedZarrStore(RowStore):
    """images.zarr (array `0`) plus pending.rows and tmp/ beside it."""

    def __init__(self, layout: Layout, spec: ImageSpec, storage: Storage) -> None:
        super().__init__(spec, storage)
        self.array = ZarrArray(layout, spec, storage)
        self.path = layout.zarr
        self.sink_path = layout.pending
        self.S = storage.shard_rows
        self.whole = self.array.shard_writer()
        self.pending = PendingSlots(layout.pending, spec.row_bytes)
        self.slot_bytes = self.pending.slot_bytes
        self.tail: list[Buffer] = []  # the committed chunks of the partly filled last shard
        self._staged: tuple[int, list[Buffer]] = (0, [])  # (rows, tail) once made durable

    def sink(self) -> CompressedSinkSpec:
        return CompressedSinkSpec(str(self.sink_path), self.storage, self.spec.row_bytes)

    def watched(self) -> tuple[list[Path], list[Path]]:
        return self.array.watched()

    def claimed_rows(self) -> int:
        return self.array.claimed_rows()

    # -- recovery -------------------------------------------------------------------
    def recover(self, n: int) -> None:
        """Cut shards past the committed rows, rewrite a last shard holding uncommitted
        chunks, raise a lagging shape, and empty the pending slots."""
        claimed = self.array.cut_beyond(n)
        s, k = divmod(n, self.S)
        self.tail = self._recover_tail(s, k) if k else []
        if n and not k:
            self.whole.check_full(s - 1)
        self._staged = (n, self.tail)
        if claimed != n:
            self.publish(n)
        self.cut_pending(n)

    def _recover_tail(self, s: int, k: int) -> list[Buffer]:
        """The last shard's committed chunks; the shard is rewritten with them alone if it
        holds more (a commit that never reached the index)."""
        chunks = self.whole.chunks(s)
        tail: list[Buffer] = list(self.whole.kept(s, k, chunks))
        if any(c is not None for c in chunks[k:]):
            self.whole.write(s, tail)
        return tail

    # -- pending slots ----------------------------------------------------------------
    def offset(self, row: int) -> int:
        return self.pending.offset(row)

    def cut_pending(self, committed: int) -> None:
        self.pending.cut(committed)

    def has_pending(self, committed: int) -> bool:
        return self.pending.holds_any()

    def read_slot(self, row: int) -> bytes:
        return self.pending.read(row)

    def write_slot(self, row: int, data: bytes) -> None:
        self.pending.write(row, data)

    # -- the commit ---------------------------------------------------------------------
    def make_durable(self, first: int, count: int) -> None:
        """Rewrite every shard rows first.. touch, whole, then fsync their folders. One
        shard at a time, so memory is one shard's worth."""
        if not count:
            return
        end = first + count
        tail: list[Buffer] = list(self.tail)
        if len(tail) != first % self.S:
            raise DatasetError(self.path, "internal: tail shard out of step with the commit")
        dirs: list[Path] = []
        row = first
        while row < end:
            s = row // self.S
            take = min(end, (s + 1) * self.S) - row
            chunks: list[Buffer] = [*tail, *self.pending.chunks(row, take)]
            dirs += self.whole.put(s, chunks)
            row += take
            # The partial last shard's new chunks outlive the read buffer: copy them (the
            # old tail is bytes already, and is not copied again at every commit).
            tail = [c if isinstance(c, bytes) else bytes(c) for c in chunks]
            tail = tail if len(chunks) < self.S else []
        fsync_dirs(dirs)
        self._staged = (end, tail)

    def shard_writer(self) -> ShardWriter:
        return self.whole

    def adopt(self, first: int, count: int) -> None:
        """Rows first.. are in shards written whole elsewhere: read back the last one's
        committed chunks (the tail the next local commit builds on)."""
        end = first + count
        s, k = divmod(end, self.S)
        self._staged = (end, list(self.whole.kept(s, k)) if k else [])

    publish_any_time = False  # it frees the slots its make_durable staged

    def publish(self, n: int) -> None:
        """Raise zarr.json's shape to `n` rows (atomically); free the committed slots."""
        staged_n, staged_tail = self._staged
        if staged_n != n:
            raise DatasetError(self.path, "internal: publishing rows that were not made durable")
        self.array.publish_shape(n)
        self.tail = staged_tail
        self.pending.free(n)

    def close(self) -> None:
        self.pending.close()
