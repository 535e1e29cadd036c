"""The worker's side of a dataset: write one decoded page into its reserved pending slot.

The supervisor reserves a row and tells the worker the byte offset of its slot; the
format decides what a slot holds. npy: the raw row, at its final place in images.npy.
zarr: the row's encoded inner chunk, length first, in `pending.rows`; the commit
assembles shards from those slots. Compression thus runs in the workers, on every core,
and the supervisor never touches pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...config import ImageSpec, Storage
from . import codec


@dataclass(frozen=True)
class SinkSpec:
    """What a worker needs to write pending rows (picklable: it is sent at spawn)."""

    path: str
    storage: Storage
    row_bytes: int


def as_page(data: np.ndarray | bytes, spec: ImageSpec) -> np.ndarray:
    """A row given as an array or raw bytes, as a page of the spec's shape and dtype."""
    page = np.asarray(data) if isinstance(data, np.ndarray) else np.frombuffer(data, "u1")
    if page.nbytes != spec.row_bytes:
        raise ValueError(f"row is {page.nbytes} bytes, expected {spec.row_bytes}")
    return page.view(spec.dtype).reshape(spec.row_shape)


class RowSink:
    """A worker's own descriptor on the pending rows' file."""

    def __init__(self, spec: SinkSpec) -> None:
        self.fd = os.open(spec.path, os.O_WRONLY | os.O_CLOEXEC)
        self.zarr = spec.storage.format == "zarr"
        self.codec: Any = codec.compressor(spec.storage) if self.zarr else None
        self.slot_bytes = codec.slot_bytes(spec.row_bytes) if self.zarr else spec.row_bytes

    def payload(self, page: np.ndarray) -> memoryview:
        """The bytes the slot of this page holds."""
        if not self.zarr:
            return page.data.cast("B")
        data = codec.encode(page, self.codec)
        if codec.LENGTH.size + len(data) > self.slot_bytes:
            raise ValueError(f"encoded row of {len(data)} bytes exceeds its pending slot")
        return memoryview(codec.LENGTH.pack(len(data)) + data)

    def write(self, offset: int, payload: memoryview) -> None:
        while payload:
            n = os.pwrite(self.fd, payload, offset)
            payload, offset = payload[n:], offset + n

    def close(self) -> None:
        os.close(self.fd)
