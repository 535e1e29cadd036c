"""Fast random-row reads from a zarr dataset's shards, for training loops.

zarr-python reads any selection correctly but spends milliseconds of asyncio per chunk;
a training loop wants batches of random rows. The shards are tiffsink's own (one chunk
per row, index at the end), so a reader can pread one row's chunk directly and decode it
with the array's codec. Full shards are never rewritten (only the partly filled last one
is), so their indexes are cached; the last shard's is read again on every access.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...config import ImageSpec, Storage
from . import codec, shard


class ShardReader:
    """Reads rows of one zarr dataset's array by row number (read-only, any process)."""

    def __init__(self, array: Path, spec: ImageSpec, storage: Storage) -> None:
        self.array, self.spec, self.S = array, spec, storage.shard_rows
        self.codec: Any = codec.compressor(storage)
        self.shape = codec.chunk_shape(spec.row_shape)
        self.ndim = 1 + len(self.shape)
        self._tables: dict[int, np.ndarray] = {}  # full shards' (offset, nbytes) tables

    def _path(self, s: int) -> Path:
        return shard.path(self.array, s, self.ndim)

    def _table(self, s: int, fd: int) -> np.ndarray:
        table = self._tables.get(s)
        if table is not None:
            return table
        size = os.fstat(fd).st_size
        ib = shard.index_bytes(self.S)
        tail = os.pread(fd, ib, size - ib)
        table = shard.parse_table(tail, self.S, size - ib)
        if (table[:, 0] != shard.MISSING).all():
            self._tables[s] = table  # a full shard is never rewritten
        return table

    def take(self, rows: Sequence[int], n: int) -> np.ndarray:
        """Rows (each < n, the committed count) as (k, H, W[, C])."""
        out = np.empty((len(rows), *self.spec.row_shape), self.spec.dtype)
        order = np.argsort(rows, kind="stable")
        fd, open_s = -1, -1
        try:
            for i in order:
                r = int(rows[i])
                if not 0 <= r < n:
                    raise IndexError(f"row {r} is not committed (dataset has {n})")
                s = r // self.S
                if s != open_s:
                    if fd >= 0:
                        os.close(fd)
                    fd, open_s = os.open(self._path(s), os.O_RDONLY), s
                off, nbytes = self._table(s, fd)[r % self.S]
                data = os.pread(fd, int(nbytes), int(off))
                chunk = codec.decode(data, self.codec, self.shape, self.spec.dtype)
                out[i] = codec.from_chunk(chunk)
        finally:
            if fd >= 0:
                os.close(fd)
        return out
