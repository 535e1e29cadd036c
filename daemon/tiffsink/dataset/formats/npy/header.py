"""The fixed-size .npy header of `images.npy`, rewritable in place as the row count grows.

numpy's format allows any amount of space padding in the header dict, so we reserve
HEADER_BYTES (one page, which also page-aligns the data for mmap) and print the row
count right-aligned in a fixed-width field. Growing N then changes only the bytes of that
field, and the rewrite is one small pwrite at a fixed offset: the file is a valid .npy at
every instant, with a header that never claims rows whose data is not yet on disk.
"""

from __future__ import annotations

import ast
import os

import numpy as np

MAGIC = b"\x93NUMPY"
HEADER_BYTES = 4096
COUNT_WIDTH = 20  # digits reserved for N: enough for any 64-bit row count
_PREFIX_LEN = len(MAGIC) + 2 + 2  # magic, version 1.0, uint16 header length
_COUNT_KEY = "'shape': ("


def descr(dtype: str) -> str:
    """The .npy descr string for a row dtype, little-endian as written on every platform."""
    return np.dtype(dtype).newbyteorder("<").str


def build(n_rows: int, row_shape: tuple[int, ...], dtype: str) -> bytes:
    """The whole header (HEADER_BYTES long) for `n_rows` rows."""
    rest = "".join(f", {d}" for d in row_shape)
    text = (
        f"{{'descr': '{descr(dtype)}', 'fortran_order': False, "
        f"{_COUNT_KEY}{n_rows:>{COUNT_WIDTH}}{rest}), }}"
    )
    dict_len = HEADER_BYTES - _PREFIX_LEN
    body = text.ljust(dict_len - 1) + "\n"
    head = MAGIC + b"\x01\x00" + dict_len.to_bytes(2, "little") + body.encode("latin1")
    assert len(head) == HEADER_BYTES
    return head


def count_offset(row_shape: tuple[int, ...], dtype: str) -> int:
    """Byte offset of the fixed-width row-count field inside the header."""
    head = build(0, row_shape, dtype)
    return head.index(_COUNT_KEY.encode()) + len(_COUNT_KEY)


def count_field(n_rows: int) -> bytes:
    return f"{n_rows:>{COUNT_WIDTH}}".encode("latin1")


def write_count(fd: int, n_rows: int, offset: int) -> None:
    """Rewrite N in place: one pwrite of COUNT_WIDTH bytes."""
    data = count_field(n_rows)
    if os.pwrite(fd, data, offset) != len(data):
        raise OSError("short write rewriting the .npy header")


def parse(head: bytes) -> tuple[int, tuple[int, ...], str]:
    """(n_rows, row_shape, descr) from a header; ValueError when it is not ours."""
    if len(head) < HEADER_BYTES or not head.startswith(MAGIC):
        raise ValueError("not a .npy file")
    if head[6:8] != b"\x01\x00":
        raise ValueError(f"unexpected .npy version {head[6]}.{head[7]}")
    dict_len = int.from_bytes(head[8:10], "little")
    if _PREFIX_LEN + dict_len != HEADER_BYTES:
        raise ValueError(f"header is {_PREFIX_LEN + dict_len} bytes, expected {HEADER_BYTES}")
    d = ast.literal_eval(head[_PREFIX_LEN:HEADER_BYTES].decode("latin1"))
    if not isinstance(d, dict) or d.get("fortran_order") is not False:
        raise ValueError("unexpected header dict")
    shape = tuple(int(x) for x in d["shape"])
    return shape[0], shape[1:], str(d["descr"])
