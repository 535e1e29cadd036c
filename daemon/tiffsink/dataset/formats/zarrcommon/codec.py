"""How one row becomes one Zarr inner chunk: channels first, little-endian, compressed.

The same encoding runs in the workers (which write encoded rows into pending slots), in
cluster tasks and in readers; zarr-python decodes it with the codecs named in zarr.json, which
`ome.array_template` names from the same `Storage`.
"""

from __future__ import annotations

import struct
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


# A zstd skippable frame's header: its magic, then the size of the content it skips. Every
# zstd decoder (libzstd, so numcodecs and zarr-python) skips such a frame after a chunk's.
SKIPPABLE = struct.Struct("<II")
SKIPPABLE_MAGIC = 0x184D2A50


def fixed_slot_bytes(storage: Storage, row_bytes: int) -> int | None:
    """The size of a fixed slot that holds any row's chunk, for a codec whose chunks can
    fill one (then rows are written in place, as uncompressed ones are); None otherwise.
    Uncompressed: the row itself. zstd: its worst case (n + n/256 + a little, under
    n + n/128 + 1 KiB), then room for a skippable frame's header; what the frame leaves
    of the slot is the skippable frame's content, never written (a hole on disk)."""
    match storage.compression:
        case "none":
            return row_bytes
        case "zstd":
            return row_bytes + row_bytes // 128 + 1024 + SKIPPABLE.size
    return None


def slot_filler(chunk_bytes: int, slot_bytes: int, storage: Storage) -> bytes:
    """What follows a chunk of `chunk_bytes` so that its slot decodes as that chunk:
    nothing when it fills the slot, else a zstd skippable frame's header covering the
    rest. ValueError for a chunk that cannot fill the slot."""
    if chunk_bytes == slot_bytes:
        return b""
    rest = slot_bytes - chunk_bytes - SKIPPABLE.size
    if storage.compression != "zstd" or rest < 0:
        raise ValueError(f"a chunk of {chunk_bytes} bytes cannot fill a slot of {slot_bytes}")
    return SKIPPABLE.pack(SKIPPABLE_MAGIC, rest)


def _zstd_frame_bytes(data: bytes | memoryview) -> int:
    """The length of the zstd frame `data` starts with, from its header and block headers
    (as ZSTD_findFrameCompressedSize, which numcodecs does not expose)."""
    view = memoryview(data).cast("B")
    fhd = view[4]
    single = (fhd >> 5) & 1
    fcs = {0: single, 1: 2, 2: 4, 3: 8}[fhd >> 6]
    at = 5 + (0 if single else 1) + {0: 0, 1: 1, 2: 2, 3: 4}[fhd & 3] + fcs
    while True:
        head = int.from_bytes(view[at : at + 3], "little")
        at += 3 + (1 if (head >> 1) & 3 == 1 else head >> 3)  # an RLE block holds one byte
        if head & 1:
            return at + (4 if (fhd >> 2) & 1 else 0)


def unpadded(chunk: bytes | memoryview, storage: Storage) -> bytes | memoryview:
    """A chunk as a packed shard holds it: a zstd slot without the skippable frame that
    filled it (`slot_filler`); any other chunk as it is."""
    if storage.compression != "zstd":
        return chunk
    end = _zstd_frame_bytes(chunk)
    if end + SKIPPABLE.size <= len(chunk):
        magic, rest = SKIPPABLE.unpack_from(chunk, end)
        if magic == SKIPPABLE_MAGIC and end + SKIPPABLE.size + rest == len(chunk):
            return chunk[:end]
    return chunk


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
