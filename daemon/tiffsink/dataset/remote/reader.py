"""Read a published dataset from anywhere, with the API of a local one.

The array's shape in zarr.json is the remote commit point: a reader takes the row count
from it first, then reads only rows below it, whose shards and index objects were in
place before the shape was raised. The index objects of those shards are mirrored into
an in-memory SQLite database with the local schema, so `meta`, `rows(**eq)`, `column`
and labels are the local code, unchanged. Shards are fetched whole, several at once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ...errors import DatasetError
from .. import index
from ..batches import Window
from ..formats import RowReader
from ..meta import spec_from_meta, storage_from_meta
from ..reader import Dataset
from . import keys
from .image import RemoteImage
from .target import Target, open_target

GET_THREADS = 8  # shard GETs in flight at once


class RemoteRows(RowReader):
    """The committed rows of a remote image: whole shards, fetched in parallel."""

    def __init__(self, target: Target, image: RemoteImage) -> None:
        self.target, self.image = target, image
        self._zarr: Any = None

    @property
    def images(self) -> Any:
        """The zarr array (N, [C,] H, W), opened through the target's store."""
        if self._zarr is None:
            import zarr

            self._zarr = zarr.open_array(self.target.zarr_store(), path=f"{keys.ZARR}/0", mode="r")
        return self._zarr

    def refresh(self, committed: Callable[[], int], snapshot: bool) -> int:
        self._zarr = None  # an open zarr array never sees a new shape: reopen on use
        return committed()

    def take(self, rows: np.ndarray, n: int) -> np.ndarray:
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise IndexError(f"rows outside 0..{n - 1}")
        S = self.image.rows_per_shard
        out = np.empty((len(rows), *self.image.spec.row_shape), self.image.spec.dtype)
        by_shard: dict[int, list[int]] = {}
        for i, r in enumerate(rows.tolist()):
            by_shard.setdefault(r // S, []).append(i)

        def fill(s: int) -> None:  # each thread decodes its shard's rows straight into `out`
            got = self._shard_rows(s, n)
            for i in by_shard[s]:  # row by row: no gathered copy of the shard in between
                out[i] = got[rows[i] - s * S]

        with ThreadPoolExecutor(min(GET_THREADS, max(1, len(by_shard)))) as pool:
            list(pool.map(fill, by_shard))
        return out

    def window(self, rows: np.ndarray, n: int) -> Window:
        """The rows' shards fetched in parallel and kept as received: each batch copies
        its rows straight out of the GET bodies."""
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise IndexError(f"rows outside 0..{n - 1}")
        shards = np.unique(rows // self.image.rows_per_shard).tolist()
        with ThreadPoolExecutor(min(GET_THREADS, max(1, len(shards)))) as pool:
            got = dict(zip(shards, pool.map(lambda s: self._shard_rows(s, n), shards), strict=True))
        return _ShardWindow(rows, got, self.image)

    def read(self, start: int, stop: int, n: int) -> np.ndarray:
        return self.take(np.arange(start, min(stop, n), dtype=np.int64), n)

    def _shard_rows(self, s: int, n: int) -> np.ndarray:
        """Every committed row of shard `s`."""
        S = self.image.rows_per_shard
        k = min(S, n - s * S)
        data = self.target.get_buffer(keys.shard_key(s, self.image.ndim))
        if data is None:
            raise DatasetError(self.target.url, f"shard {s} is missing, but holds committed rows")
        try:
            return self.image.rows_of(data, 0, k)
        except ValueError as e:
            raise DatasetError(self.target.url, f"shard {s}: {e}") from e


class _ShardWindow:
    """A window's shards as fetched (views of the GET bodies, packed or decoded)."""

    def __init__(self, rows: np.ndarray, shards: dict[int, np.ndarray], image: RemoteImage):
        self.rows, self.shards, self.image = rows, shards, image
        self.row_shape, self.dtype = image.spec.row_shape, np.dtype(image.spec.dtype)

    def take(self, positions: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        S = self.image.rows_per_shard
        if out is None:
            out = np.empty((len(positions), *self.row_shape), self.dtype)
        for i, r in enumerate(self.rows[positions].tolist()):
            out[i] = self.shards[r // S][r % S]
        return out


class RemoteDataset(Dataset):
    """A published dataset (`open_dataset("s3://bucket/prefix")`): read-only, any host."""

    def __init__(
        self,
        url: str,
        label: str | None = None,
        transform: Callable[[np.ndarray], Any] | None = None,
        pinned: int | None = None,
    ) -> None:
        self.url = self.directory = url  # type: ignore[assignment]
        self.index_snapshot, self.transform, self.pinned = False, transform, pinned
        self.target = open_target(url)
        raw = self.target.get(keys.DATASET_JSON)
        if raw is None:
            raise DatasetError(
                url, "no published tiffsink dataset there (no tiffsink/dataset.json)"
            )
        self.info: dict[str, Any] = json.loads(raw)
        if self.info.get("remote_version", 0) > keys.REMOTE_VERSION:
            raise DatasetError(url, "published by a newer tiffsink: upgrade to read it")
        self.label = label if label is not None else (self.info.get("label") or None)
        self.spec, self.storage = spec_from_meta(self.info), storage_from_meta(self.info)
        self.dtype = np.dtype(self.spec.dtype).newbyteorder("<")
        self.row_shape = self.spec.row_shape
        self.format = self.storage.format
        self.image = RemoteImage(self.spec, self.storage)
        self.conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        index.create(self.conn, {k: v for k, v in self.info.items() if k != "remote_version"})
        self._rows = RemoteRows(self.target, self.image)
        self._n = 0
        self._mirrored = 0  # rows whose index records are in `conn`
        self.refresh()

    def refresh(self) -> int:
        """Take in every row the publisher has committed since (one GET, plus the index
        objects of new shards); a pinned dataset keeps its rows."""
        if self.pinned is not None and self._n == self.pinned:
            return self._n
        raw = self.target.get(keys.ARRAY_JSON)
        n = self.image.rows_in(raw) if raw is not None else 0
        if self.pinned is not None:
            if n < self.pinned:
                raise DatasetError(self.url, f"holds {n} rows, fewer than the {self.pinned} pinned")
            n = self.pinned
        self._mirror(n)
        self._n = self._rows.refresh(lambda: n, False)
        return self._n

    def _mirror(self, n: int) -> None:
        """Copy the index records of rows `_mirrored`..n-1 from their shards' objects."""
        S = self.image.rows_per_shard
        if n <= self._mirrored:
            return
        shards = list(range(self._mirrored // S, (n - 1) // S + 1))
        with ThreadPoolExecutor(min(GET_THREADS, len(shards))) as pool:
            found = list(pool.map(lambda s: self.target.get(keys.index_key(s)), shards))
        records = []
        for s, data in zip(shards, found, strict=True):
            if data is None:
                raise DatasetError(self.url, f"index object of shard {s} is missing")
            records += [r for r in keys.decode_records(data) if r.row < n]
        index.mirror_rows(self.conn, shards[0] * S, records)
        self._mirrored = n

    def snapshot(self) -> RemoteDataset:
        """This dataset pinned at its current rows: every epoch reads exactly these."""
        return RemoteDataset(self.url, self.label, self.transform, len(self))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle the URL (a DataLoader worker reopens it), pinned rows included."""
        return (RemoteDataset, (self.url, self.label, self.transform, self.pinned))
