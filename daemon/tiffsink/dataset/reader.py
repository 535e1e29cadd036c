"""Read a dataset while the daemon appends to it.

npy: the row count comes from the index (the commit point), not from the .npy header, so
a reader never maps a row that is not committed; the header may lag the index by one
batch during a commit, never lead it. zarr: the array's shape is raised only after the
index commit, so zarr.json (read before the index) never claims an uncommitted row; it
may lag by one batch. `refresh()` picks up rows committed since.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DatasetError
from . import header, index
from .formats.zarrread import ShardReader
from .index import FailureRecord, RowRecord
from .layout import ARRAY, Layout
from .meta import spec_from_meta, storage_from_meta


class Dataset:
    """Read-only view of the committed rows of a dataset directory.

    Any process, any number at once, while a writer appends: it owns a read-only index
    connection and a memmap that `refresh` replaces when rows were committed since.
    """

    def __init__(self, directory: str | os.PathLike[str], snapshot: bool = False) -> None:
        self.layout = Layout.of(directory).require()
        self.directory = self.layout.directory
        self.snapshot = snapshot
        self._n = 0
        self.conn = self._connect()
        try:
            self.meta: dict[str, Any] = index.read_meta(self.conn)
        except sqlite3.DatabaseError:
            self.meta = {}
        if "image" not in self.meta:
            self.conn.close()
            raise DatasetError(self.directory, "dataset is still being created (no meta yet)")
        image = self.meta["image"]
        self.dtype = np.dtype(image["dtype"]).newbyteorder("<")
        c = int(image["channels"])
        h, w = int(image["height"]), int(image["width"])
        self.row_shape: tuple[int, ...] = (h, w) if c == 1 else (h, w, c)
        self.spec, self.storage = spec_from_meta(self.meta), storage_from_meta(self.meta)
        self.format = self.storage.format
        self._shards: ShardReader | None = None
        # npy: a read-only memmap (N, H, W[, C]). zarr: the zarr array (N, [C,] H, W).
        self.images: Any = np.empty((0, *self.row_shape), self.dtype)
        self.refresh()

    def _connect(self) -> sqlite3.Connection:
        """The live index (same host as the writer: WAL), or its published snapshot, read
        as an immutable file (any host, e.g. over NFS; it lags, never leads)."""
        if not self.snapshot:
            return index.connect(self.layout.index, readonly=True)
        if not self.layout.snapshot.is_file():
            raise DatasetError(self.layout.snapshot, "no index snapshot published (yet)")
        return sqlite3.connect(f"file:{self.layout.snapshot}?immutable=1", uri=True)

    def refresh(self) -> int:
        """Map every row committed by now; returns the new row count."""
        if self.snapshot:  # a newer snapshot is a new file
            self.conn.close()
            self.conn = self._connect()
        if self.format == "zarr":
            return self._refresh_zarr()
        n = index.committed_rows(self.conn)
        self._n = n
        if n == 0:
            self.images = np.empty((0, *self.row_shape), self.dtype)
            return 0
        path = self.layout.images
        need = header.HEADER_BYTES + n * int(np.prod(self.row_shape)) * self.dtype.itemsize
        if path.stat().st_size < need:
            raise DatasetError(path, f"index commits {n} rows but the file is shorter")
        self.images = np.memmap(
            path,
            dtype=self.dtype,
            mode="r",
            offset=header.HEADER_BYTES,
            shape=(n, *self.row_shape),
        )
        return n

    def _refresh_zarr(self) -> int:
        import zarr  # only zarr datasets pay for the import

        where = self.layout.zarr / ARRAY
        try:
            # Shape before the index: what zarr.json says was committed before we look.
            self.images = zarr.open_array(where, mode="r")
        except (OSError, ValueError) as e:
            raise DatasetError(where, f"cannot open the zarr array: {e}") from e
        n = index.committed_rows(self.conn)
        if self.images.shape[0] > n and not self.snapshot:
            raise DatasetError(where, f"shape says {self.images.shape[0]} rows, index {n}")
        self._n = min(n, int(self.images.shape[0]))  # a snapshot may lag the shape
        return self._n

    def __len__(self) -> int:
        return self._n

    def take(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The given rows, in the given order, as (k, H, W[, C]): a training batch. On zarr
        this reads chunks straight from the shards, many times faster than zarr-python."""
        idx = np.asarray(rows, dtype=np.int64)
        if self.format != "zarr":
            if idx.size and not (idx.min() >= 0 and idx.max() < len(self)):
                raise IndexError(f"rows outside 0..{len(self) - 1}")
            return np.asarray(self.images[idx])
        if self._shards is None:
            self._shards = ShardReader(self.layout.zarr / ARRAY, self.spec, self.storage)
        return self._shards.take(idx.tolist(), len(self))

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1 as a numpy array (N, H, W[, C]), whatever the format."""
        data = np.asarray(self.images[start : min(stop, len(self))])
        if self.format == "zarr" and data.ndim == 4:
            data = data.transpose(0, 2, 3, 1)
        return data

    def rows_for(self, source: str | os.PathLike[str]) -> list[RowRecord]:
        """Index records of every committed row from this source path, in row order."""
        return [r for r in index.rows_for_source(self.conn, os.fspath(source)) if r.row < len(self)]

    def record(self, row: int) -> RowRecord:
        rec = index.row_record(self.conn, row)
        if rec is None or row >= len(self):
            raise IndexError(f"row {row} is not committed (dataset has {len(self)})")
        return rec

    def failures(self, reason: str | None = None) -> list[FailureRecord]:
        return index.failures(self.conn, reason)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_dataset(path: str | os.PathLike[str], snapshot: bool = False) -> Dataset:
    """Open a dataset for reading; safe while a writer appends (call .refresh() to grow).

    snapshot=True reads `index.snapshot.sqlite`, which a cluster backfill publishes for
    readers on other hosts (SQLite's WAL needs all processes on one host)."""
    return Dataset(path, snapshot)
