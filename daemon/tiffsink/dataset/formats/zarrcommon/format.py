"""What the two zarr formats share as formats: the image group on disk, the reader and the
check. Each format package builds one `ZarrFormat` around its own store."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from ....config import ImageSpec, Storage
from ...layout import ARRAY, Layout
from ..base import Format
from ..store import RowStore
from .check import check_zarr
from .reader import ZarrReader

StoreFactory = Callable[[Layout, ImageSpec, Storage], RowStore]


class ZarrFormat(Format):
    """An OME-Zarr 0.5 image (`images.zarr`, array `0`, one chunk per row in shards)."""

    name = "zarr"
    whole_shards = True

    def __init__(self, store: StoreFactory, fixed_slots: bool) -> None:
        self._store = store
        self.fixed_slots = fixed_slots  # every row has a fixed slot in its shard

    def on_disk(self, layout: Layout) -> bool:
        return (layout.zarr / "zarr.json").is_file()

    def bytes_on_disk(self, layout: Layout) -> int:
        """The sum of images.zarr's files (compressed shards have no fixed size)."""
        total = 0
        for folder, _, files in os.walk(layout.zarr):
            for f in files:
                with contextlib.suppress(FileNotFoundError):  # a shard being replaced
                    total += os.stat(os.path.join(folder, f)).st_size
        return total

    def open_store(self, layout: Layout, spec: ImageSpec, storage: Storage) -> RowStore:
        return self._store(layout, spec, storage)

    def open_reader(self, layout: Layout, spec: ImageSpec, storage: Storage) -> ZarrReader:
        return ZarrReader(layout.zarr / ARRAY, spec, storage)

    def check(
        self, layout: Layout, spec: ImageSpec, storage: Storage, n: int, busy: bool
    ) -> tuple[list[str], list[str]]:
        return check_zarr(layout, spec, storage, n, busy, self.fixed_slots)
