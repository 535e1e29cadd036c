"""How one row becomes one Zarr inner chunk: channels first, little-endian, compressed.

The same encoding runs in the workers (which write encoded rows into pending slots), in
cluster tasks and in readers; zarr-python decodes it with the codecs named in zarr.json, which
`ome.array_template` names from the same `Storage`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ....config import Storage


def compressor(storage: Storage) -> Any:
    """The numcodecs codec that writes what zarr.json's codec reads, or None."""
    if storage.compression == "none":
        return None
    import numcodecs  # imported only where rows are compressed (100 ms)

    level = storage.compression_level
    match storage.compression:
        case "zstd":
            return numcodecs.Zstd(level=level)
        case "blosc-lz4":
            return numcodecs.Blosc(cname="lz4", clevel=level, shuffle=numcodecs.Blosc.SHUFFLE)
        case "blosc-zstd":
            return numcodecs.Blosc(cname="zstd", clevel=level, shuffle=numcodecs.Blosc.SHUFFLE)
        case "gzip":
            return numcodecs.GZip(level=level)
    return None


def chunk_shape(row_shape: tuple[int, ...]) -> tuple[int, ...]:
    """A row as Zarr stores it: (H, W) stays, (H, W, C) becomes (C, H, W) (NGFF order)."""
    if len(row_shape) == 3:
        h, w, c = row_shape
        return (c, h, w)
    return row_shape


def to_chunk(page: np.ndarray) -> np.ndarray:
    """A decoded page (H, W) or (H, W, C) as a contiguous little-endian chunk."""
    if page.ndim == 3:
        page = page.transpose(2, 0, 1)
    return np.ascontiguousarray(page, dtype=page.dtype.newbyteorder("<"))


def from_chunk(chunk: np.ndarray) -> np.ndarray:
    """Back to the dataset's row layout, (C, H, W) -> (H, W, C)."""
    return chunk.transpose(1, 2, 0) if chunk.ndim == 3 else chunk


def encode(page: np.ndarray, codec: Any) -> bytes:
    arr = to_chunk(page)
    if codec is None:
        return arr.tobytes()
    return bytes(codec.encode(arr))


def decode(data: bytes, codec: Any, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """An inner chunk back to an array of the Zarr chunk shape."""
    raw = data if codec is None else codec.decode(data)
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
