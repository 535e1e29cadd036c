"""A Zarr v3 shard (`sharding_indexed`, index at the end) built from encoded row chunks.

tiffsink writes whole shards itself instead of through zarr-python: the encoded chunks
come from the workers, so assembling a shard is a concatenation plus a small index, and
the shard object is replaced atomically (zarr-python writes shard files in place, which a
reader or a crash could see half done). The format is the spec's: the inner chunks one
after another, then for every inner chunk (in C order) an (offset, nbytes) pair of
little-endian uint64, followed by the crc32c of those pairs. A chunk that is not there
has both set to 2**64-1. zarr-python reads what this writes (tests/test_zarr.py).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

import google_crc32c
import numpy as np

Buffer = bytes | bytearray | memoryview
MISSING = 2**64 - 1
CRC_BYTES = 4


class ShardError(ValueError):
    """A shard object that is not what this module writes (torn, or not a shard)."""


def path(array: Path, s: int, ndim: int) -> Path:
    """Where shard `s` of an `ndim`-dimensional array lives (Zarr's default "c/" key
    encoding; only the row axis has more than one shard)."""
    return array.joinpath("c", str(s), *["0"] * (ndim - 1))


def index_bytes(n_chunks: int) -> int:
    return 16 * n_chunks + CRC_BYTES


def build(chunks: Sequence[Buffer], n_chunks: int) -> bytes:
    """A shard of `n_chunks` inner chunks whose first len(chunks) are given, the rest absent."""
    return b"".join(build_parts(chunks, n_chunks))


def build_parts(chunks: Sequence[Buffer], n_chunks: int) -> list[Buffer]:
    """The shard as buffers to write one after another (the chunks are not copied)."""
    return [*chunks, index_for([memoryview(c).nbytes for c in chunks], n_chunks)]


def index_for(sizes: Sequence[int], n_chunks: int) -> bytes:
    """The index (with its crc32c) of a shard whose chunks of `sizes` lie back to back
    from offset 0, the rest absent."""
    if len(sizes) > n_chunks:
        raise ValueError(f"{len(sizes)} chunks do not fit a shard of {n_chunks}")
    table = np.full((n_chunks, 2), MISSING, dtype="<u8")
    offset = 0
    for i, n in enumerate(sizes):
        table[i] = (offset, n)
        offset += n
    idx = table.tobytes()
    return idx + struct.pack("<I", google_crc32c.value(idx))


def dense_index(n_chunks: int, chunk_bytes: int) -> bytes:
    """The index of a shard whose every chunk k lies at k * chunk_bytes (uncompressed rows
    all have one size): it names every slot, written or not."""
    return index_for([chunk_bytes] * n_chunks, n_chunks)


def parse(data: bytes, n_chunks: int) -> list[bytes | None]:
    """The inner chunks of a shard, None where absent; ShardError if it is torn or foreign."""
    size = index_bytes(n_chunks)
    if len(data) < size:
        raise ShardError(f"{len(data)} bytes, shorter than its {size}-byte index")
    idx = data[len(data) - size : len(data) - CRC_BYTES]
    (crc,) = struct.unpack("<I", data[len(data) - CRC_BYTES :])
    if google_crc32c.value(idx) != crc:
        raise ShardError("index checksum mismatch")
    table = np.frombuffer(idx, dtype="<u8").reshape(n_chunks, 2)
    body = len(data) - size
    out: list[bytes | None] = []
    for off, nbytes in table.tolist():
        if off == MISSING and nbytes == MISSING:
            out.append(None)
        elif off + nbytes > body:
            raise ShardError(f"chunk at {off}+{nbytes} runs past the {body}-byte body")
        else:
            out.append(data[off : off + nbytes])
    return out


def present(chunks: Sequence[bytes | None]) -> int:
    """How many chunks are there from the start on, before the first absent one."""
    for i, c in enumerate(chunks):
        if c is None:
            return i
    return len(chunks)


def parse_table(tail: bytes, n_chunks: int, body: int) -> np.ndarray:
    """The (offset, nbytes) table from a shard's last index_bytes; ShardError if torn."""
    idx = tail[:-CRC_BYTES]
    if len(tail) != index_bytes(n_chunks):
        raise ShardError("shorter than its index")
    if google_crc32c.value(idx) != struct.unpack("<I", tail[-CRC_BYTES:])[0]:
        raise ShardError("index checksum mismatch")
    table = np.frombuffer(idx, dtype="<u8").reshape(n_chunks, 2)
    ok = (table[:, 0] == MISSING) | (table[:, 0] + table[:, 1] <= body)
    if not ok.all():
        raise ShardError(f"a chunk runs past the {body}-byte body")
    return table


def read_present(path: str | bytes | os.PathLike[str], n_chunks: int) -> list[bool]:
    """Which inner chunks a shard file holds, from its index alone (no chunk is read)."""
    size = index_bytes(n_chunks)
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        total = fh.tell()
        if total < size:
            raise ShardError(f"{total} bytes, shorter than its {size}-byte index")
        fh.seek(total - size)
        tail = fh.read(size)
    idx = tail[:-CRC_BYTES]
    if google_crc32c.value(idx) != struct.unpack("<I", tail[-CRC_BYTES:])[0]:
        raise ShardError("index checksum mismatch")
    table = np.frombuffer(idx, dtype="<u8").reshape(n_chunks, 2)
    body = total - size
    present = []
    for off, nbytes in table.tolist():
        missing = off == MISSING and nbytes == MISSING
        if not missing and off + nbytes > body:
            raise ShardError(f"chunk at {off}+{nbytes} runs past the {body}-byte body")
        present.append(not missing)
    return present
