"""The file-system calls every format and the cluster share: durable writes and renames.

One module, so that the formats (and cluster tasks) do not borrow them from one another:
fsync a folder, write all of a buffer, replace a file atomically, create folders, give
disk space back, and name an OSError the way the log and error messages do.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ..errors import DatasetFullError

Buffer = bytes | bytearray | memoryview
FULL = (errno.ENOSPC, errno.EDQUOT)  # errnos that mean "no space": retryable later
_IOV_MAX = 1024  # buffers per writev (Linux's UIO_MAXIOV)


def os_error_name(e: BaseException) -> str:
    """ "ENOSPC (No space left on device)" for an OSError, else the type and message."""
    if isinstance(e, OSError) and e.errno:
        return f"{errno.errorcode.get(e.errno, 'errno ' + str(e.errno))} ({e.strerror})"
    return f"{type(e).__name__}: {e}"


def fsync_dir(path: Path) -> None:
    """fsync a folder, so that the entries made or renamed in it survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dirs(dirs: Iterable[Path]) -> None:
    """fsync folders, the deepest first (a new folder's entry in its parent last)."""
    for d in sorted(set(dirs), key=lambda p: len(p.parts), reverse=True):
        fsync_dir(d)


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """pwrite all of `data`, resuming after short writes."""
    data = data.cast("B")
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def write_all(fd: int, parts: Sequence[Buffer]) -> None:
    """writev `parts` one after another, in groups the kernel accepts, resuming after
    short writes; nothing is copied."""
    views = [memoryview(p).cast("B") for p in parts]
    views = [v for v in views if v.nbytes]
    while views:
        n = os.writev(fd, views[:_IOV_MAX])
        while n and views:
            if n >= views[0].nbytes:
                n -= views[0].nbytes
                views.pop(0)
            else:
                views[0] = views[0][n:]
                n = 0


def replace_atomic(
    tmp_dir: Path,
    dest: Path,
    fill: Callable[[int], None],
    durable: bool = True,
    what: str = "a shard",
) -> None:
    """Replace `dest` with a file `fill(fd)` writes: a temporary file in `tmp_dir`, fsynced
    (unless not `durable`), renamed over. A reader, or a crash, sees the old file or the
    new one, never a mix. ENOSPC/EDQUOT become DatasetFullError (nothing is visible yet)."""
    tmp = tmp_dir / f"{dest.name}.{uuid.uuid4().hex}.tmp"  # unique: writers may run at once
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            fill(fd)
            if durable:
                os.fsync(fd)  # a failed fsync is never retried: the next attempt is a new file
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if e.errno in FULL:
            raise DatasetFullError(dest, f"{os_error_name(e)} writing {what}") from e
        raise


def write_atomic(
    tmp_dir: Path, dest: Path, data: Buffer | Sequence[Buffer], durable: bool = True
) -> None:
    """Replace `dest` with `data` (one buffer, or several written in order, uncopied)."""
    parts: Sequence[Buffer] = [data] if isinstance(data, bytes | bytearray | memoryview) else data
    replace_atomic(tmp_dir, dest, lambda fd: write_all(fd, parts), durable)


def make_dirs(d: Path) -> list[Path]:
    """Create a folder and its missing parents; returns the folders whose entries changed
    (to fsync, so the new folders survive a power cut)."""
    missing = []
    while not d.is_dir():
        missing.append(d)
        d = d.parent
    changed = []
    for m in reversed(missing):
        m.mkdir(exist_ok=True)  # another process may make it at the same moment
        changed.append(m.parent)
    return changed


_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Deallocate bytes offset..offset+length of `fd` (fallocate PUNCH_HOLE, the size
    stays); OSError where the file system cannot."""
    if length <= 0:
        return
    mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
    if _libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
