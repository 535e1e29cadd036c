"""Zarr shards written in place: every row at a fixed offset, a fixed index.

When every inner chunk fits one slot size (uncompressed rows are all one size; a zstd
chunk is padded to its worst case by a skippable frame, `codec.fixed_slot_bytes`), a
shard can be laid out once and for all: chunk k at k * slot_bytes, then an index naming
every slot whole (crc32c included). That index never changes, so a shard is created at
its full size (sparse) with the index already written, and workers write rows straight
into their slots, as they do into images.npy. A slot past the committed rows is covered by the index
but lies beyond zarr.json's shape, which is raised only after the index commit: no reader
asks for it. Durable is an fdatasync per shard touched; nothing is copied.

An uncompressed full shard laid out this way is byte for byte the shard that
`shard.build` writes for the same rows (chunks back to back from 0). Shards written
whole (the cluster's tasks) take this layout too, through `ShardWriter` with fixed slots.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ...fsio import punch_hole, pwrite_all
from ..zarrcommon import shard


class DenseShards:
    """The shard files of one uncompressed array, addressed by row (any process).

    A row's byte address is row * slot_bytes, as if the shards were one file; each call
    opens and closes the shard it needs, so a shard cut while idle is never written
    through a stale descriptor.
    """

    def __init__(self, array: Path, rows_per_shard: int, slot_bytes: int, ndim: int) -> None:
        self.array, self.S, self.slot_bytes, self.ndim = array, rows_per_shard, slot_bytes, ndim
        self.body = rows_per_shard * slot_bytes
        self.index = shard.dense_index(rows_per_shard, slot_bytes)
        self.size = self.body + len(self.index)

    def path(self, s: int) -> Path:
        return shard.path(self.array, s, self.ndim)

    def where(self, address: int) -> tuple[int, int]:
        """(shard, offset in its file) of a byte address."""
        return divmod(address, self.body)

    def _open(self, s: int) -> int:
        """Shard `s` for writing, created at full size with its index if missing. Two
        processes creating it at once write the same bytes."""
        path = self.path(s)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            # Checked on every open, not only by the creator: a creator killed before
            # writing the index must not leave a committed row in a shard without one.
            if os.fstat(fd).st_size < self.size:
                pwrite_all(fd, memoryview(self.index), self.body)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def write(self, data: memoryview, address: int) -> None:
        s, off = self.where(address)
        fd = self._open(s)
        try:
            pwrite_all(fd, data, off)
        finally:
            os.close(fd)

    def read(self, nbytes: int, address: int) -> bytes:
        s, off = self.where(address)
        fd = os.open(self.path(s), os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(fd, nbytes, off)
        finally:
            os.close(fd)

    def sync(self, s: int) -> None:
        """fdatasync shard `s` (its rows and, for a new file, its size)."""
        fd = os.open(self.path(s), os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def is_dense(self, s: int) -> bool:
        """Whether shard `s` is laid out this way (full size, the dense index)."""
        path = self.path(s)
        try:
            with open(path, "rb") as fh:
                if os.fstat(fh.fileno()).st_size != self.size:
                    return False
                return os.pread(fh.fileno(), len(self.index), self.body) == self.index
        except FileNotFoundError:
            return False

    def data_after(self, s: int, k: int) -> bool:
        """Whether a dense shard holds non-zero bytes in slots k.. (uncommitted rows).
        Only the allocated parts are read: holes are skipped with SEEK_DATA."""
        fd = os.open(self.path(s), os.O_RDONLY | os.O_CLOEXEC)
        try:
            at = k * self.slot_bytes
            while at < self.body:
                try:
                    at = os.lseek(fd, at, os.SEEK_DATA)
                except OSError as e:
                    if e.errno == errno.ENXIO:  # only a hole up to the end of the file
                        return False
                    raise
                if at >= self.body:
                    return False
                end = min(os.lseek(fd, at, os.SEEK_HOLE), self.body, at + (1 << 20))
                if os.pread(fd, end - at, at).strip(b"\0"):
                    return True
                at = end
            return False
        finally:
            os.close(fd)

    def clear_after(self, s: int, k: int) -> None:
        """Deallocate slots k.. of a dense shard (the index stays); zero them where holes
        cannot be punched."""
        fd = os.open(self.path(s), os.O_RDWR | os.O_CLOEXEC)
        try:
            start, length = k * self.slot_bytes, self.body - k * self.slot_bytes
            try:
                punch_hole(fd, start, length)
            except OSError:
                zeros = memoryview(bytes(self.slot_bytes))
                for at in range(start, self.body, self.slot_bytes):
                    pwrite_all(fd, zeros, at)
        finally:
            os.close(fd)
