"""The fixed-slot zarr format's worker side: a page's chunk, at its slot in its shard.

An uncompressed chunk fills its slot. A zstd chunk is compressed here, on the worker's
core, and followed by a skippable frame's header covering the rest of its slot; only the
frame and that header are written, so the rest stays a hole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ....config import Storage
from ..sink import RowSink, SinkSpec
from ..zarrcommon import codec
from .shards import DenseShards


class SlotSink(RowSink):
    """The shard files of one array, opened per write (a shard cut while idle is never
    written through a stale descriptor)."""

    def __init__(self, shards: DenseShards, storage: Storage) -> None:
        self.shards, self.storage = shards, storage
        self.compressor: Any = codec.compressor(storage)

    def payload(self, page: np.ndarray) -> memoryview:
        chunk = codec.to_chunk(page)
        if self.compressor is None:
            return chunk.data.cast("B")
        frame = bytes(self.compressor.encode(chunk))
        filler = codec.slot_filler(len(frame), self.shards.slot_bytes, self.storage)
        return memoryview(frame + filler)

    def write(self, address: int, payload: memoryview) -> None:
        self.shards.write(payload, address)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class SlotSinkSpec(SinkSpec):
    array: str  # images.zarr/0
    rows_per_shard: int
    slot_bytes: int
    ndim: int  # the array's dimensions (where shard files go)
    storage: Storage  # the codec the workers encode with

    def open(self) -> SlotSink:
        shards = DenseShards(Path(self.array), self.rows_per_shard, self.slot_bytes, self.ndim)
        return SlotSink(shards, self.storage)
