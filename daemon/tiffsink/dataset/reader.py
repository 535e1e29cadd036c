"""Read a dataset while the daemon appends to it.

The index says what each row is; the rows' format maps them (`Format.open_reader`): npy
takes the row count from the index (the commit point), never from its header; zarr reads
its shape before the index, never ahead of the commit point. Either may lag the index by
one batch during a commit. `refresh()` picks up rows committed since.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import DatasetError
from . import index
from .batches import Buffers, Window, batches
from .formats import RowReader, format_of
from .layout import Layout
from .meta import spec_from_meta, storage_from_meta
from .records import FailureRecord, RowRecord
from .rowmeta import RowMeta


class Dataset(RowMeta):
    """Read-only view of the committed rows of a dataset directory.

    Any process, any number at once, while a writer appends: it owns a read-only index
    connection and a memmap (or zarr array) that `refresh` replaces when rows were
    committed since. It is also a map-style training dataset (`len`, `ds[i]`), which
    pickles by path: a DataLoader worker reopens it instead of copying pixels.
    """

    _buffers: Buffers | None = None  # batch arrays, reused across epochs

    def __init__(
        self,
        directory: str | os.PathLike[str],
        snapshot: bool = False,
        label: str | None = None,
        transform: Callable[[np.ndarray], Any] | None = None,
        pinned: int | None = None,
    ) -> None:
        self.layout = Layout.of(directory).require()
        self.directory = self.layout.directory
        self.index_snapshot, self.transform, self.pinned = snapshot, transform, pinned
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
        try:
            self._rows: RowReader = format_of(self.storage).open_reader(
                self.layout, self.spec, self.storage
            )
        except BaseException:
            self.conn.close()
            raise
        self.refresh()

    def _connect(self) -> sqlite3.Connection:
        """The live index (same host as the writer: WAL), or its published snapshot, read
        as an immutable file (any host, e.g. over NFS; it lags, never leads)."""
        if not self.index_snapshot:
            return index.connect(self.layout.index, readonly=True)
        if not self.layout.snapshot.is_file():
            raise DatasetError(self.layout.snapshot, "no index snapshot published (yet)")
        return sqlite3.connect(f"file:{self.layout.snapshot}?immutable=1", uri=True)

    def refresh(self) -> int:
        """Map every row committed by now; returns the new row count. A pinned dataset
        (`snapshot()`) keeps its rows."""
        if self.pinned is not None and self._n == self.pinned:
            return self._n
        if self.index_snapshot:  # a newer snapshot is a new file
            self.conn.close()
            self.conn = self._connect()
        n = self._rows.refresh(lambda: index.committed_rows(self.conn), self.index_snapshot)
        if self.pinned is not None:
            if n < self.pinned:
                raise DatasetError(
                    self.directory, f"has {n} rows, fewer than the {self.pinned} pinned"
                )
            n = self.pinned
        self._n = n
        return self._n

    def snapshot(self) -> Dataset:
        """This dataset pinned at its current rows, while it keeps growing: every epoch of
        a training run reads exactly these rows (record `len()` in a checkpoint)."""
        return Dataset(self.directory, self.index_snapshot, self.label, self.transform, len(self))

    def batches(
        self,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = False,
    ) -> Iterator[np.ndarray]:
        """Batches of images (k, H, W[, C]) over every row, in an order fixed by (seed,
        epoch): whole shards read at a time, the next ones while these are used. Call it
        on a `snapshot()` so that a growing dataset does not change the epochs."""
        for _rows, imgs in batches(
            self,
            self.storage.shard_rows,
            batch_size,
            shuffle,
            seed,
            epoch,
            drop_last,
            self._batch_buffers(),
        ):
            yield imgs

    @property
    def images(self) -> Any:
        """npy: a read-only memmap (N, H, W[, C]). zarr: the zarr array (N, [C,] H, W)."""
        return self._rows.images

    def __len__(self) -> int:
        return self._n

    def take(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The given rows, in the given order, as (k, H, W[, C]): a training batch. On zarr
        this reads chunks straight from the shards, many times faster than zarr-python."""
        return self._rows.take(np.asarray(rows, dtype=np.int64), len(self))

    def window(self, rows: np.ndarray) -> Window:
        """These rows fetched for `batches()`, which copies each batch out of them."""
        return self._rows.window(np.asarray(rows, dtype=np.int64), len(self))

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1 as a numpy array (N, H, W[, C]), whatever the format."""
        return self._rows.read(start, stop, len(self))

    def full_shard(self, s: int, rows_per_shard: int) -> bytes | None:
        """Committed full shard `s` as a Zarr shard object, if the format stores one."""
        return self._rows.full_shard(s, rows_per_shard, len(self))

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
        return (
            Dataset,
            (str(self.directory), self.index_snapshot, self.label, self.transform, self.pinned),
        )

    def _batch_buffers(self) -> Buffers:
        """The batch arrays kept between epochs, so that each epoch starts on warm ones."""
        if self._buffers is None:
            self._buffers = Buffers()
        return self._buffers

    def close(self) -> None:
        self._buffers = None
        self.conn.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
