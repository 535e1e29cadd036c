"""The single-writer lock of a dataset: flock on `writer.lock`, which holds the PID.

flock is released by the kernel when the holder dies, even by SIGKILL, so a crash never
leaves a stale lock; the PID inside is only for messages ("locked by PID 1234").
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import DatasetLockedError
from .layout import Layout


def _read_pid(fd: int) -> int | None:
    raw = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(raw) if raw.isdigit() else None


def acquire(layout: Layout, path: Path | None = None) -> int:
    """Take the writer lock (or the lock file `path`, such as the publisher's); returns
    its fd (closing it releases the lock)."""
    fd = os.open(path or layout.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        raise DatasetLockedError(layout.directory, pid) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def holder(layout: Layout, path: Path | None = None) -> int | None:
    """PID of the process holding the writer lock (or the lock file `path`; -1 if
    unreadable), None when free."""
    try:
        fd = os.open(path or layout.lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            return -1 if pid is None else pid
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
