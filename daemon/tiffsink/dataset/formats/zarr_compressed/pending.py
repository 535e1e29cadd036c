"""`pending.rows`: the compressed zarr format's pending slots, one encoded row each.

Compressed rows vary in size, so a row cannot be written at its place in its shard: a
worker writes its encoded chunk, length first, into a fixed-size slot of this file, and
the commit reads the slots back to assemble whole shards. Slot offsets start over at 0
whenever nothing is pending (`epoch` is the row at offset 0); committed slots are
deallocated after each commit, so a long backfill that never idles does not grow it.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

from ....errors import DatasetError
from ...fsio import punch_hole

LENGTH = struct.Struct("<Q")  # a pending slot starts with its chunk's length


def slot_bytes(row_bytes: int) -> int:
    """Room for one encoded row: the codecs' worst case plus its length. zstd, blosc and
    deflate all stay under n + n/128 + a small constant on data they cannot shrink."""
    return LENGTH.size + row_bytes + row_bytes // 128 + 1024


class PendingSlots:
    """pending.rows on the writer's side: offsets, read-back, cutting, freeing."""

    def __init__(self, path: Path, row_bytes: int) -> None:
        self.path = path
        self.slot_bytes = slot_bytes(row_bytes)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.epoch = 0  # the row whose slot is at offset 0
        self._buf = bytearray()  # slots read back at commit, reused
        self._freed_to = 0  # committed slots below this offset are deallocated

    def offset(self, row: int) -> int:
        return (row - self.epoch) * self.slot_bytes

    def cut(self, committed: int) -> None:
        """No row is pending: the slots start over at offset 0."""
        os.ftruncate(self.fd, 0)
        self.epoch = committed
        self._freed_to = 0  # slots below this offset are deallocated already

    def holds_any(self) -> bool:
        return os.fstat(self.fd).st_size > 0

    def read(self, row: int) -> bytes:
        return os.pread(self.fd, self.slot_bytes, self.offset(row))

    def write(self, row: int, data: bytes) -> None:
        os.pwrite(self.fd, data, self.offset(row))

    def chunks(self, first: int, count: int) -> list[memoryview]:
        """The encoded chunks in the slots of rows first..first+count-1: views into one
        reused buffer, valid until the next call."""
        need = count * self.slot_bytes
        if len(self._buf) < need:
            self._buf = bytearray(need)
        raw = memoryview(self._buf)[:need]
        # The last slot is only as long as its chunk, so the read may end early.
        got = os.preadv(self.fd, [raw], self.offset(first))
        out = []
        for i in range(count):
            at = i * self.slot_bytes
            start = at + LENGTH.size
            size = LENGTH.unpack_from(raw, at)[0] if start <= got else -1
            if not 0 <= size <= self.slot_bytes - LENGTH.size or start + size > got:
                raise DatasetError(self.path, f"slot of row {first + i} is torn")
            out.append(raw[start : start + size])
        return out

    def free(self, committed: int) -> None:
        """Deallocate the slots of committed rows; where holes cannot be punched, `cut`
        gives the space back when the pipeline idles."""
        with contextlib.suppress(OSError):
            end = self.offset(committed)
            punch_hole(self.fd, self._freed_to, end - self._freed_to)
            self._freed_to = end

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
