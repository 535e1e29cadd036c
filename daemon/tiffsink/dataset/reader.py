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
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import DatasetError
from . import header, index
from .formats.zarrread import ShardReader
from .index import FailureRecord, RowRecord
from .layout import ARRAY, Layout
from .meta import spec_from_meta, storage_from_meta
from .rowmeta import RowMeta


class Dataset(RowMeta):
    """Read-only view of the committed rows of a dataset directory.

    Any process, any number at once, while a writer appends: it owns a read-only index
    connection and a memmap (or zarr array) that `refresh` replaces when rows were
    committed since. It is also a map-style training dataset (`len`, `ds[i]`), which
    pickles by path: a DataLoader worker reopens it instead of copying pixels.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        snapshot: bool = False,
        label: str | None = None,
        transform: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        self.layout = Layout.of(directory).require()
        self.directory = self.layout.directory
        self.snapshot, self.transform = snapshot, transform
        self._n = 0
        self.conn = self._connect()
        try:
            self.info: dict[str, Any] = index.read_meta(self.conn)
        except sqlite3.DatabaseError:
            self.info = {}
        if "image" not in self.info:
            self.conn.close()
            raise DatasetError(self.directory, "dataset is still being created (no meta yet)")
        # The key `ds[i]` pairs with each image: asked for, else [metadata] label.
        self.label = label if label is not None else (self.info.get("label") or None)
        self.spec, self.storage = spec_from_meta(self.info), storage_from_meta(self.info)
        self.dtype = np.dtype(self.spec.dtype).newbyteorder("<")
        self.row_shape: tuple[int, ...] = self.spec.row_shape
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

    def read(self, start: int, stop: int) -> np.ndarray:
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

    def __getitem__(self, i: int) -> Any:
        """Row i's image (after `transform`), or (image, label) when a label key is set."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} is not committed (dataset has {len(self)})")
        i %= len(self)
        img: Any = self.take([i])[0]
        if self.transform is not None:
            img = self.transform(img)
        if self.label:
            return img, self.meta(i).get(self.label)
        return img

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle the path, never the pixels (a pickled memmap carries its whole data:
        numpy/numpy#2049); the copy reopens the dataset in the process that loads it."""
        return (Dataset, (str(self.directory), self.snapshot, self.label, self.transform))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_dataset(
    path: str | os.PathLike[str],
    snapshot: bool = False,
    label: str | None = None,
    transform: Callable[[np.ndarray], Any] | None = None,
) -> Dataset:
    """Open a dataset for reading; safe while a writer appends (call .refresh() to grow).

    snapshot=True reads `index.snapshot.sqlite`, which a cluster backfill publishes for
    readers on other hosts (SQLite's WAL needs all processes on one host). `label` (by
    default the dataset's [metadata] label) and `transform` shape what `ds[i]` returns."""
    return Dataset(path, snapshot, label, transform)
