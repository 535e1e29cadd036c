"""The zarr backend: rows in an OME-Zarr 0.5 image, one row per chunk, whole-shard writes.

Pending rows are encoded chunks in slots of `pending.rows` (the workers compress them).
The commit assembles each shard the batch touches from the committed chunks it already
has plus the new ones, writes it to `tmp/`, fsyncs and renames it into place, so a
reader or a crash sees the old shard or the new one, never half of one; both hold every
committed row. Then the index commits, and only then is zarr.json's shape raised
(write, fsync, rename, fsync the folder). Shape last: a zarr-python reader never sees a
row that is not committed, nor a fill-value row inside the shape. This process is the
only writer of every shard (zarr-python issue 3682: concurrent partial shard writes
lose data).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ...config import ImageSpec, Storage
from ...errors import DatasetError, DatasetFullError
from ..layout import ARRAY, Layout
from ..rows import fsync_dir
from . import codec, ome, shard
from .atomic import make_dirs, write_atomic
from .base import RowStore
from .holes import punch_hole
from .shard import Buffer


class ZarrStore(RowStore):
    """images.zarr (array `0`) plus pending.rows and tmp/ beside it."""

    def __init__(self, layout: Layout, spec: ImageSpec, storage: Storage) -> None:
        super().__init__(spec, storage)
        self.layout = layout
        self.path = layout.zarr
        self.pending_path = layout.pending
        self.array = layout.zarr / ARRAY
        self.S = storage.shard_rows
        self.slot_bytes = codec.slot_bytes(spec.row_bytes)
        self.ndim = 1 + len(codec.chunk_shape(spec.row_shape))
        self.tail: list[Buffer] = []  # the committed chunks of the partly filled last shard
        self._staged: tuple[int, list[Buffer]] = (0, [])  # (rows, tail) once made durable
        self.epoch = 0  # the row whose slot is at offset 0 of pending.rows
        self._buf = bytearray()  # slots read back at commit, reused
        self._freed_to = 0  # committed slots below this offset are deallocated
        layout.tmp.mkdir(exist_ok=True)
        if not (self.array / "zarr.json").is_file():
            ome.create_in_place(layout, spec, storage)
        self.meta: dict[str, Any] = ome.load_array_meta(
            self.array, spec, storage, rebuild_torn=True
        )
        self._open_pending()

    def _open_pending(self) -> None:
        self.pending_fd = os.open(self.pending_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def claimed_rows(self) -> int:
        return int(self.meta["shape"][0])

    def shard_path(self, s: int) -> Path:
        return shard.path(self.array, s, self.ndim)

    # -- recovery -------------------------------------------------------------------
    def recover(self, n: int) -> None:
        """Cut shards past the committed rows, rewrite a last shard holding uncommitted
        chunks, raise a lagging shape, and empty the pending slots."""
        claimed = self._cut_beyond(n)
        self._recover_last(n)
        if claimed != n:
            self.publish(n)
        self.cut_pending(n)

    def _cut_beyond(self, n: int) -> int:
        """Empty tmp/, refuse a shape past the index, delete shards past the committed
        rows; returns the shape zarr.json claims."""
        for stale in self.layout.tmp.iterdir():
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink()
        claimed = self.claimed_rows()
        if claimed > n:
            raise DatasetError(
                self.array / "zarr.json",
                f"shape claims {claimed} rows but the index committed {n}",
            )
        self._delete_shards_after((n - 1) // self.S if n else -1)
        return claimed

    def _shards_after(self, last: int) -> list[str]:
        """The entries of c/ past shard `last` (anything not a shard number too)."""
        try:
            return [e for e in os.listdir(self.array / "c") if not e.isdigit() or int(e) > last]
        except FileNotFoundError:
            return []

    def _delete_shards_after(self, last: int) -> None:
        beyond = self._shards_after(last)
        for e in beyond:
            shutil.rmtree(self.array / "c" / e, ignore_errors=True)
        if beyond:
            fsync_dir(self.array / "c")

    def _recover_last(self, n: int) -> None:
        """The last shard holds exactly its committed chunks (in memory too: the tail)."""
        self.tail = self._recover_tail(n) if n % self.S else []
        if n and not n % self.S:
            self._check_full((n - 1) // self.S)
        self._staged = (n, self.tail)

    def _read_shard(self, s: int) -> list[bytes | None]:
        where = self.shard_path(s)
        try:
            return shard.parse(where.read_bytes(), self.S)
        except FileNotFoundError:
            raise DatasetError(where, "missing, but it holds committed rows") from None
        except shard.ShardError as e:
            raise DatasetError(where, f"torn shard holding committed rows: {e}") from e

    def _read_tail(self, n: int) -> list[Buffer]:
        chunks = self._read_shard(n // self.S) if n % self.S else []
        return [c for c in chunks[: n % self.S] if c is not None]

    def _recover_tail(self, n: int) -> list[Buffer]:
        s, k = n // self.S, n % self.S
        chunks = self._read_shard(s)
        if shard.present(chunks) < k:
            raise DatasetError(
                self.shard_path(s), f"holds {shard.present(chunks)} of its {k} committed rows"
            )
        tail: list[Buffer] = [c for c in chunks[:k] if c is not None]
        if any(c is not None for c in chunks[k:]):
            write_atomic(self.layout.tmp, self.shard_path(s), shard.build(tail, self.S))
            fsync_dir(self.shard_path(s).parent)
        return tail

    def _check_full(self, s: int) -> None:
        chunks = self._read_shard(s)
        if shard.present(chunks) < self.S:
            raise DatasetError(self.shard_path(s), "a committed shard is missing rows")

    # -- pending slots ----------------------------------------------------------------
    def offset(self, row: int) -> int:
        return (row - self.epoch) * self.slot_bytes

    def cut_pending(self, committed: int) -> None:
        """No row is pending: the slots start over at offset 0."""
        os.ftruncate(self.pending_fd, 0)
        self.epoch = committed
        self._freed_to = 0  # slots below this offset are deallocated already

    def has_pending(self, committed: int) -> bool:
        return os.fstat(self.pending_fd).st_size > 0

    def _chunks(self, first: int, count: int) -> list[memoryview]:
        """The encoded chunks in the slots of rows first..first+count-1: views into one
        reused buffer, valid until the next call."""
        need = count * self.slot_bytes
        if len(self._buf) < need:
            self._buf = bytearray(need)
        raw = memoryview(self._buf)[:need]
        # The last slot is only as long as its chunk, so the read may end early.
        got = os.preadv(self.pending_fd, [raw], self.offset(first))
        out = []
        for i in range(count):
            at = i * self.slot_bytes
            start = at + codec.LENGTH.size
            size = codec.LENGTH.unpack_from(raw, at)[0] if start <= got else -1
            if not 0 <= size <= self.slot_bytes - codec.LENGTH.size or start + size > got:
                raise DatasetError(self.pending_path, f"slot of row {first + i} is torn")
            out.append(raw[start : start + size])
        return out

    # -- the commit ---------------------------------------------------------------------
    def make_durable(self, first: int, count: int) -> None:
        """Rewrite every shard rows first.. touch, whole and atomically, then fsync their
        folders. One shard at a time, so memory is one shard's worth."""
        if not count:
            return
        end = first + count
        tail: list[Buffer] = list(self.tail)
        if len(tail) != first % self.S:
            raise DatasetError(self.path, "internal: tail shard out of step with the commit")
        dirs: set[Path] = set()
        row = first
        while row < end:
            s = row // self.S
            take = min(end, (s + 1) * self.S) - row
            chunks: list[Buffer] = [*tail, *self._chunks(row, take)]
            dest = self.shard_path(s)
            if not dest.parent.is_dir():
                dirs.update(make_dirs(dest.parent))
            write_atomic(self.layout.tmp, dest, shard.build_parts(chunks, self.S))
            dirs.add(dest.parent)
            row += take
            # The partial last shard's new chunks outlive the read buffer: copy them (the
            # old tail is bytes already, and is not copied again at every commit).
            tail = [c if isinstance(c, bytes) else bytes(c) for c in chunks]
            tail = tail if len(chunks) < self.S else []
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(d)
        self._staged = (end, tail)

    def publish(self, n: int) -> None:
        """Raise zarr.json's shape to `n` rows (atomically); free the committed slots."""
        self._publish_shape(n)
        staged_n, staged_tail = self._staged
        if staged_n == n:
            self.tail = staged_tail
        else:  # the shards were written by others (the cluster's tasks): read the tail
            self.tail = self._read_tail(n)
        with contextlib.suppress(OSError):  # where unsupported, cut_pending frees them
            end = self.offset(n)
            punch_hole(self.pending_fd, self._freed_to, end - self._freed_to)
            self._freed_to = end

    def _publish_shape(self, n: int) -> None:
        self.meta["shape"][0] = n
        data = json.dumps(self.meta, indent=2).encode()
        try:
            # Not fsynced: the index is the truth, and recovery raises a lagging shape (or
            # rebuilds a zarr.json a power cut left empty). Renamed, so readers see the
            # old shape or the new one.
            write_atomic(self.layout.tmp, self.array / "zarr.json", data, durable=False)
        except DatasetFullError as e:
            # The rows are committed already: not retryable; recovery raises the shape.
            raise OSError(errno.ENOSPC, str(e)) from e
