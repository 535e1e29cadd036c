"""Replacing a file atomically: write a temporary file, fsync it, rename it over.

A reader, or a crash, sees the old file or the new one, never a mix. Shards and
zarr.json are written this way, by the committer thread and by cluster tasks alike.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from ...errors import DatasetFullError
from ..rows import os_error_name
from .shard import Buffer

_IOV_MAX = 1024  # buffers per writev (Linux's UIO_MAXIOV)


def write_atomic(
    tmp_dir: Path, dest: Path, data: Buffer | Sequence[Buffer], durable: bool = True
) -> None:
    """Replace `dest` with `data` (one buffer, or several written in order, uncopied):
    write a temporary file, fsync it (unless not `durable`), rename it over."""
    if isinstance(data, bytes | bytearray | memoryview):
        parts = [memoryview(data)]
    else:
        parts = [memoryview(b) for b in data]
    tmp = tmp_dir / f"{dest.name}.{uuid.uuid4().hex}.tmp"  # unique: writers may run at once
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            _write_all(fd, parts)
            if durable:
                os.fsync(fd)  # a failed fsync is never retried: the next attempt is a new file
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            # Nothing of this commit is visible yet: the caller may retry it later.
            raise DatasetFullError(dest, f"{os_error_name(e)} writing a shard") from e
        raise


def _write_all(fd: int, parts: list[memoryview]) -> None:
    """writev in groups the kernel accepts, resuming after short writes."""
    parts = [p.cast("B") for p in parts if p.nbytes]
    while parts:
        n = os.writev(fd, parts[:_IOV_MAX])
        while n and parts:
            if n >= parts[0].nbytes:
                n -= parts[0].nbytes
                parts.pop(0)
            else:
                parts[0] = parts[0][n:]
                n = 0


def make_dirs(d: Path) -> list[Path]:
    """Create a folder and its missing parents; returns the folders whose entries changed
    (to fsync, so the new folders survive a power cut)."""
    missing = []
    while not d.is_dir():
        missing.append(d)
        d = d.parent
    changed = []
    for m in reversed(missing):
        m.mkdir(exist_ok=True)  # another task may make it at the same moment
        changed.append(m.parent)
    return changed
