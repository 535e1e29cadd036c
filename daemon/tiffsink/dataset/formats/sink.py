"""The worker's side of a dataset: write one decoded page into its reserved pending slot.

The supervisor reserves a row and tells the worker the byte address of its slot; the
format decides what a slot holds. npy: the raw row, at its final place in images.npy.
Uncompressed zarr: the row's chunk, at its final place in its shard (`dense.py`).
Compressed zarr: the row's encoded chunk, length first, in `pending.rows`; the commit
assembles shards from those slots. Compression thus runs in the workers, on every core,
and the supervisor never touches pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...config import ImageSpec, Storage
from . import codec
from .dense import DenseShards, pwrite_all


@dataclass(frozen=True)
class SinkSpec:
    """What a worker needs to write pending rows (picklable: it is sent at spawn)."""

    path: str  # the file of pending slots, or (uncompressed zarr) the array's folder
    storage: Storage
    row_bytes: int
    ndim: int = 0  # uncompressed zarr: the array's dimensions (where shard files go)


def as_page(data: np.ndarray | bytes, spec: ImageSpec) -> np.ndarray:
    """A row given as an array or raw bytes, as a page of the spec's shape and dtype."""
    page = np.asarray(data) if isinstance(data, np.ndarray) else np.frombuffer(data, "u1")
    if page.nbytes != spec.row_bytes:
        raise ValueError(f"row is {page.nbytes} bytes, expected {spec.row_bytes}")
    return page.view(spec.dtype).reshape(spec.row_shape)


class RowSink:
    """A worker's way into the pending rows: one descriptor on the pending file, or the
    shard files of an uncompressed zarr array (opened per write)."""

    def __init__(self, spec: SinkSpec) -> None:
        st = spec.storage
        self.zarr = st.format == "zarr"
        self.shards = (
            DenseShards(Path(spec.path), st.shard_rows, spec.row_bytes, spec.ndim)
            if self.zarr and st.compression == "none"
            else None
        )
        self.fd = -1 if self.shards else os.open(spec.path, os.O_WRONLY | os.O_CLOEXEC)
        self.codec: Any = codec.compressor(st) if self.zarr else None
        self.framed = self.zarr and self.shards is None  # slots hold length + chunk
        self.slot_bytes = codec.slot_bytes(spec.row_bytes) if self.framed else spec.row_bytes

    def payload(self, page: np.ndarray) -> memoryview:
        """The bytes the slot of this page holds."""
        if not self.zarr:
            return page.data.cast("B")
        if not self.framed:
            return codec.to_chunk(page).data.cast("B")
        data = codec.encode(page, self.codec)
        if codec.LENGTH.size + len(data) > self.slot_bytes:
            raise ValueError(f"encoded row of {len(data)} bytes exceeds its pending slot")
        return memoryview(codec.LENGTH.pack(len(data)) + data)

    def write(self, address: int, payload: memoryview) -> None:
        if self.shards is not None:
            self.shards.write(payload, address)
        else:
            pwrite_all(self.fd, payload, address)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
