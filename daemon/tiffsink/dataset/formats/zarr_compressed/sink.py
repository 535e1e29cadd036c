"""The compressed zarr format's worker side: a page encoded with the array's codec, length
first, into its slot of `pending.rows`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ....config import Storage
from ..sink import FileSink, SinkSpec
from ..zarrcommon import codec
from .pending import LENGTH, slot_bytes


class CompressedSink(FileSink):
    """One descriptor on pending.rows; the workers compress, on every core."""

    def __init__(self, path: str, storage: Storage, row_bytes: int) -> None:
        super().__init__(path)
        self.codec: Any = codec.compressor(storage)
        self.slot_bytes = slot_bytes(row_bytes)

    def payload(self, page: np.ndarray) -> memoryview:
        data = codec.encode(page, self.codec)
        if LENGTH.size + len(data) > self.slot_bytes:
            raise ValueError(f"encoded row of {len(data)} bytes exceeds its pending slot")
        return memoryview(LENGTH.pack(len(data)) + data)


@dataclass(frozen=True)
class CompressedSinkSpec(SinkSpec):
    path: str  # pending.rows
    storage: Storage
    row_bytes: int

    def open(self) -> CompressedSink:
        return CompressedSink(self.path, self.storage, self.row_bytes)
