"""The npy format: one `.npy` file of fixed-size rows (`images.npy`), any numpy reads it."""

from __future__ import annotations

from typing import Any

from ....config import ImageSpec, Storage
from ...layout import Layout
from ..base import Format
from .check import check_npy
from .reader import NpyReader
from .store import NpyStore


class NpyFormat(Format):
    """Rows at their final place in images.npy; the header's count is the published one."""

    name = "npy"

    def identity(self, storage: Storage) -> dict[str, Any]:
        """Only the format: the zarr keys (shards, codec) mean nothing here."""
        return {"format": storage.format}

    def on_disk(self, layout: Layout) -> bool:
        return layout.images.is_file()

    def bytes_on_disk(self, layout: Layout) -> int:
        return layout.images.stat().st_size

    def open_store(self, layout: Layout, spec: ImageSpec, storage: Storage) -> NpyStore:
        return NpyStore(layout, spec, storage)

    def open_reader(self, layout: Layout, spec: ImageSpec, storage: Storage) -> NpyReader:
        return NpyReader(layout.images, spec)

    def check(
        self, layout: Layout, spec: ImageSpec, storage: Storage, n: int, busy: bool
    ) -> tuple[list[str], list[str]]:
        return check_npy(layout, spec, n, busy)
