"""The one path that makes a whole zarr shard durable from plain buffers.

Assemble the shard from its chunks, write it to `tmp/`, fsync it, rename it over the old
one, fsync the folders whose entries changed: a reader, or a crash, sees the old shard or
the new one, never half of one. Whoever writes a whole shard goes through here: the
compressed format's commit and recovery, the uncompressed format's re-layout of a shard
packed by an older version, and the cluster's shard tasks (a `ShardWriter` pickles).

Two layouts, both valid Zarr v3 shards (`shard.py`): chunks back to back (compressed
rows vary in size), or every chunk k at k * slot_bytes under an index naming every slot
(the layout workers write rows in place into: uncompressed rows, or zstd chunks each
followed by a skippable frame filling its slot). An uncompressed full shard is the same
file either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ....config import Storage
from ....errors import DatasetError
from ...fsio import Buffer, fsync_dirs, make_dirs, pwrite_all, replace_atomic, write_all
from . import codec, shard


@dataclass(frozen=True)
class ShardWriter:
    """Writes the shards of one array whole (picklable: cluster tasks get one)."""

    array: Path  # images.zarr/0
    tmp: Path  # the dataset's tmp/, on the same file system
    rows_per_shard: int
    ndim: int
    storage: Storage  # for the chunk encoder
    slot_bytes: int = 0  # > 0: chunk k at k * slot_bytes (uncompressed); 0: packed

    def path(self, s: int) -> Path:
        return shard.path(self.array, s, self.ndim)

    def encoder(self) -> Callable[[np.ndarray], bytes]:
        """page -> its chunk, as zarr.json's codecs read it (what a shard holds per row)."""
        compressor = codec.compressor(self.storage)
        return lambda page: codec.encode(page, compressor)

    def chunks(self, s: int) -> list[bytes | None]:
        """Shard `s`'s chunks, None where absent; DatasetError if it is missing or torn
        (only shards holding committed rows are read)."""
        where = self.path(s)
        try:
            return shard.parse(where.read_bytes(), self.rows_per_shard)
        except FileNotFoundError:
            raise DatasetError(where, "missing, but it holds committed rows") from None
        except shard.ShardError as e:
            raise DatasetError(where, f"torn shard holding committed rows: {e}") from e

    def kept(self, s: int, k: int, chunks: list[bytes | None] | None = None) -> list[bytes]:
        """The first `k` chunks of shard `s` (its committed ones; from `chunks` if the
        shard was read already); DatasetError if one is absent."""
        if chunks is None:
            chunks = self.chunks(s) if k else []
        have = shard.present(chunks[:k])
        if have < k:
            raise DatasetError(self.path(s), f"holds {have} of its {k} committed rows")
        return [c for c in chunks[:k] if c is not None]

    def check_full(self, s: int) -> None:
        """DatasetError unless shard `s`, a committed full one, holds all its chunks."""
        if shard.present(self.chunks(s)) < self.rows_per_shard:
            raise DatasetError(self.path(s), "a committed shard is missing rows")

    def put(self, s: int, chunks: Sequence[Buffer]) -> list[Path]:
        """Replace shard `s` with one holding `chunks` first (the rest absent): written to
        tmp/, fsynced, renamed. Returns the folders to fsync (`write` does; a commit of
        several shards fsyncs them once)."""
        dest = self.path(s)
        dirs = [dest.parent]
        if not dest.parent.is_dir():
            dirs += make_dirs(dest.parent)
        if self.slot_bytes:
            replace_atomic(self.tmp, dest, lambda fd: self._fill_slots(fd, chunks))
        else:
            parts = shard.build_parts(chunks, self.rows_per_shard)
            replace_atomic(self.tmp, dest, lambda fd: write_all(fd, parts))
        return dirs

    def write(self, s: int, chunks: Sequence[Buffer]) -> None:
        """Make shard `s` durable holding `chunks`, folders included."""
        fsync_dirs(self.put(s, chunks))

    def _fill_slots(self, fd: int, chunks: Sequence[Buffer]) -> None:
        """Chunk k at k * slot_bytes, the index after the last slot; unwritten slots stay
        holes (the file is sparse, as a shard written in place is)."""
        S, size = self.rows_per_shard, self.slot_bytes
        if len(chunks) > S:
            raise ValueError(f"{len(chunks)} chunks do not fit a shard of {S}")
        for k, c in enumerate(chunks):
            view = memoryview(c).cast("B")
            filler = codec.slot_filler(view.nbytes, size, self.storage)
            pwrite_all(fd, view, k * size)
            if filler:
                pwrite_all(fd, memoryview(filler), k * size + view.nbytes)
        pwrite_all(fd, memoryview(shard.dense_index(S, size)), S * size)
