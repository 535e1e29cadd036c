"""A storage format as one object: every side of it, and what it can do.

Modelled on zarr-python v3's stores: one class per backend owns the writer's store, the
reader, the consistency check and the files that make a folder this format; callers ask
it, or a capability property on it (`whole_shards`), and never compare format names.
The registry (`registry.py`) picks the object for a `[dataset]` config.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

from ...config import ImageSpec, Storage
from ..batches import ArrayWindow, Window
from ..layout import Layout
from .store import RowStore


class RowReader(ABC):
    """The committed rows of one dataset as a reader maps them (read-only, any process).

    `images` is what `Dataset.images` shows: npy's memmap (N, H, W[, C]) or the zarr
    array (N, [C,] H, W).
    """

    images: Any

    @abstractmethod
    def refresh(self, committed: Callable[[], int], snapshot: bool) -> int:
        """Map every row committed by now; `committed` reads the index's count, called at
        the moment this format needs it (zarr: after its shape). Returns the row count."""

    @abstractmethod
    def take(self, rows: np.ndarray, n: int) -> np.ndarray:
        """Rows (each < n, the committed count), in the given order, as (k, H, W[, C])."""

    def window(self, rows: np.ndarray, n: int) -> Window:
        """Rows (each < n) fetched for `batches()`, which copies batches out of them; by
        default read at once into one array."""
        return ArrayWindow(self.take(rows, n))

    def read(self, start: int, stop: int, n: int) -> np.ndarray:
        """Rows start..stop-1 (capped at n) as (k, H, W[, C])."""
        return np.asarray(self.images[start : min(stop, n)])

    def full_shard(self, s: int, rows_per_shard: int, n: int) -> bytes | None:
        """Committed full shard `s` as a Zarr shard object of `rows_per_shard` rows, if
        this format stores it as one (then a publisher copies it as it is); else None."""
        return None


class Format(ABC):
    """One storage format: its store, reader, check and files on disk."""

    name: str  # the `[dataset] format` value this object serves
    # Capability: shards may be written whole by other hosts (a Dask backfill) through
    # the store's `shard_writer`, and committed with `DatasetWriter.commit_written`.
    whole_shards: bool = False

    def identity(self, storage: Storage) -> dict[str, Any]:
        """What the index's meta remembers of the storage config: its identity (a config
        that differs in these keys is refused). By default every key."""
        return {k: getattr(storage, k) for k in storage.__dataclass_fields__}

    @abstractmethod
    def on_disk(self, layout: Layout) -> bool:
        """Whether the folder holds this format's rows (by its files)."""

    @abstractmethod
    def bytes_on_disk(self, layout: Layout) -> int:
        """What the rows take on disk (`tiffsink status`)."""

    @abstractmethod
    def open_store(self, layout: Layout, spec: ImageSpec, storage: Storage) -> RowStore:
        """The writer's store, created on disk if missing (the caller holds the lock)."""

    @abstractmethod
    def open_reader(self, layout: Layout, spec: ImageSpec, storage: Storage) -> RowReader:
        """A reader of the committed rows (nothing is mapped before `refresh`)."""

    @abstractmethod
    def check(
        self, layout: Layout, spec: ImageSpec, storage: Storage, n: int, busy: bool
    ) -> tuple[list[str], list[str]]:
        """(problems, notes) about the rows given `n` committed ones (`tiffsink verify`);
        what a commit in progress explains is a note while `busy` (a writer holds the
        lock), a problem otherwise."""
