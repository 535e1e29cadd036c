"""Reading a zarr dataset: the zarr-python array of its committed rows, and fast random
rows straight from the shards for training loops.

The array's shape is raised only after the index commit, so zarr.json (read before the
index) never claims an uncommitted row; it may lag by one batch. zarr-python reads any
selection correctly but spends milliseconds of asyncio per chunk; a training loop wants
batches of random rows. The shards are tiffsink's own (one chunk per row, index at the
end), so `take` preads one row's chunk directly and decodes it with the array's codec.
Full shards are never rewritten (only the partly filled last one is), so their indexes
are cached; the last shard's is read again on every access.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ....config import ImageSpec, Storage
from ....errors import DatasetError
from ..base import RowReader
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


class ZarrReader(RowReader):
    """The zarr array (N, [C,] H, W) as `images`; rows as (k, H, W[, C]) from `read`/`take`.

    The row count comes from zarr.json itself, and rows from the shards, so a reader that
    never asks for `images` never imports zarr-python (a quarter of a second)."""

    def __init__(self, array: Path, spec: ImageSpec, storage: Storage) -> None:
        self.array, self.spec, self.storage = array, spec, storage
        self._shards: ShardReader | None = None
        self._ndim = 1 + len(codec.chunk_shape(spec.row_shape))

    def __getattr__(self, name: str) -> Any:
        """`images`, the zarr-python array, opened on first use after each refresh (an
        open array never sees a new shape)."""
        if name != "images":
            raise AttributeError(name)
        import zarr

        try:
            self.images = zarr.open_array(self.array, mode="r")
        except (OSError, ValueError) as e:
            raise DatasetError(self.array, f"cannot open the zarr array: {e}") from e
        return self.images

    def refresh(self, committed: Callable[[], int], snapshot: bool) -> int:
        try:
            # Shape before the index: what zarr.json says was committed before we look.
            shape = json.loads((self.array / "zarr.json").read_bytes())["shape"]
            shape_n = int(shape[0])
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise DatasetError(self.array, f"cannot open the zarr array: {e}") from e
        self.__dict__.pop("images", None)
        n = committed()
        if shape_n > n and not snapshot:
            raise DatasetError(self.array, f"shape says {shape_n} rows, index {n}")
        return min(n, shape_n)  # a snapshot may lag the shape

    def take(self, rows: np.ndarray, n: int) -> np.ndarray:
        if self._shards is None:
            self._shards = ShardReader(self.array, self.spec, self.storage)
        return self._shards.take(rows.tolist(), n)

    def full_shard(self, s: int, rows_per_shard: int, n: int) -> bytes | None:
        """A full shard, packed: an uncompressed one is packed whichever way it was written
        (in place or whole), so it is the published object byte for byte; a zstd one
        written in slots is packed here (its chunks without the frames that padded them),
        so that no padding travels."""
        if rows_per_shard != self.storage.shard_rows or (s + 1) * rows_per_shard > n:
            return None
        data = shard.path(self.array, s, self._ndim).read_bytes()
        if codec.compressor(self.storage) is None:  # uncompressed chunks fill their slots
            return data
        chunks = shard.parse(data, rows_per_shard)
        if any(c is None for c in chunks):
            return None  # cannot be: the shard holds committed rows only; re-read them
        return shard.build([codec.unpadded(c, self.storage) for c in chunks if c], rows_per_shard)

    def read(self, start: int, stop: int, n: int) -> np.ndarray:
        return self.take(np.arange(start, min(stop, n), dtype=np.int64), n)
