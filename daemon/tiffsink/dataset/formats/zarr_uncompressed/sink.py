"""The uncompressed zarr format's worker side: a page's chunk, at its slot in its shard."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..sink import RowSink, SinkSpec
from ..zarrcommon import codec
from .shards import DenseShards


class UncompressedSink(RowSink):
    """The shard files of one array, opened per write (a shard cut while idle is never
    written through a stale descriptor)."""

    def __init__(self, shards: DenseShards) -> None:
        self.shards = shards

    def payload(self, page: np.ndarray) -> memoryview:
        return codec.to_chunk(page).data.cast("B")

    def write(self, address: int, payload: memoryview) -> None:
        self.shards.write(payload, address)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class UncompressedSinkSpec(SinkSpec):
    array: str  # images.zarr/0
    rows_per_shard: int
    row_bytes: int
    ndim: int  # the array's dimensions (where shard files go)

    def open(self) -> UncompressedSink:
        shards = DenseShards(Path(self.array), self.rows_per_shard, self.row_bytes, self.ndim)
        return UncompressedSink(shards)
