"""The OME-Zarr image a published copy is: its documents and shards, made from rows.

Whatever the local format, the remote copy is an OME-Zarr 0.5 image with the local
shard size and codec (an npy dataset: its configured shard size, uncompressed), so every
Zarr reader opens it. Shards are packed (chunks back to back, an index naming the ones
present): a full shard is then byte for byte the shard a local zarr dataset holds, and
a partly filled one costs only its rows.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ...config import ImageSpec, Storage
from ..formats.zarrcommon import codec, ome, shard


class RemoteImage:
    """Builds (publisher) and reads (reader) the objects of one remote image."""

    def __init__(self, spec: ImageSpec, storage: Storage) -> None:
        self.spec, self.storage = spec, storage
        self.rows_per_shard = storage.shard_rows
        self.codec = codec.compressor(storage)
        self.chunk = codec.chunk_shape(spec.row_shape)
        self.ndim = len(self.chunk) + 1

    @staticmethod
    def storage_for(local: Storage) -> Storage:
        """The remote's storage for a local dataset's: zarr, with its shard size and codec."""
        return Storage("zarr", local.shard_rows, local.compression, local.compression_level)

    def documents(self) -> tuple[bytes, dict[str, Any]]:
        """The group's zarr.json, and the array's as a dict (for 0 rows), as zarr-python
        writes them for the local format."""
        group = json.dumps(ome.group_document(self.spec), indent=2).encode()
        return group, ome.array_template(self.spec, self.storage)

    @staticmethod
    def array_json(template: dict[str, Any], n: int) -> bytes:
        """The array's zarr.json claiming `n` rows: the remote commit point."""
        return json.dumps({**template, "shape": [n, *template["shape"][1:]]}, indent=2).encode()

    @staticmethod
    def rows_in(array_json: bytes) -> int:
        """How many rows an array's zarr.json claims."""
        return int(json.loads(array_json)["shape"][0])

    def shard(self, rows: np.ndarray) -> bytes:
        """A shard holding `rows` (k, H, W[, C]) first, the rest absent."""
        chunks = [codec.encode(rows[i], self.codec) for i in range(len(rows))]
        return shard.build(chunks, self.rows_per_shard)

    def _packed_rows(self, data: bytes | memoryview, k: int) -> np.ndarray | None:
        """Uncompressed rows 0..k-1 viewed in place (no copy), when they lie back to back
        from offset 0, as a packed shard holds them; None otherwise."""
        if self.codec is not None or len(self.chunk) == 3:  # RGB chunks are (C, H, W)
            return None
        S, size = self.rows_per_shard, int(np.prod(self.chunk)) * np.dtype(self.spec.dtype).itemsize
        n_idx = shard.index_bytes(S)
        if len(data) < n_idx:
            raise ValueError("the shard is shorter than its index")
        table = shard.parse_table(bytes(data[-n_idx:]), S, len(data) - n_idx)
        want = np.arange(k, dtype="<u8") * size
        if not (np.array_equal(table[:k, 0], want) and (table[:k, 1] == size).all()):
            return None
        dtype = np.dtype(self.spec.dtype).newbyteorder("<")
        return np.frombuffer(data, dtype, count=k * size // dtype.itemsize).reshape(k, *self.chunk)

    def rows_of(self, data: bytes | memoryview, first: int, stop: int) -> np.ndarray:
        """Rows first..stop-1 of a shard (positions inside it) as (k, H, W[, C]);
        ValueError if the shard does not hold them."""
        fast = self._packed_rows(data, stop)
        if fast is not None:
            return fast[first:stop]
        chunks = shard.parse(bytes(data), self.rows_per_shard)
        out = np.empty((stop - first, *self.spec.row_shape), self.spec.dtype)
        for i in range(first, stop):
            c = chunks[i]
            if c is None:
                raise ValueError(f"the shard lacks its row {i}")
            got = codec.decode(c, self.codec, self.chunk, self.spec.dtype)
            out[i - first] = codec.from_chunk(got)
        return out
