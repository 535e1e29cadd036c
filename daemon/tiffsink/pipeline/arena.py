"""The shared-memory arena: one heartbeat per worker, the id of the task it started last.

The supervisor reads a dead or hung worker's heartbeat to tell which task of a bundle it
was on (only that task is charged), and a new id in it is progress (the timeout counts
per task). Allocated once, in a file under /dev/shm named with our prefix and PID, so a
run killed with SIGKILL leaves something `sweep_stale_arenas` can recognise and remove.
Workers get the file by descriptor (SharedFd), not by name: someone removing it from
/dev/shm then costs nothing, and replacement workers still map the same memory as the
supervisor. Pixels never pass through it: workers write their pages to their reserved
dataset rows.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
import struct
from multiprocessing import reduction
from pathlib import Path
from typing import Any

PREFIX = "tiffsink-"


def _shm_dir() -> Path:
    return Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(os.environ.get("TMPDIR", "/tmp"))


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_arenas() -> list[Path]:
    """Remove arenas left by tiffsink processes that no longer exist."""
    removed = []
    for p in _shm_dir().glob(f"{PREFIX}*"):
        pid = p.name[len(PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError, PermissionError):  # another user's
                p.unlink()
                removed.append(p)
    return removed


class SharedFd:
    """A descriptor handed to a spawned process: pickled while the process starts, it is
    passed into the child (multiprocessing's DupFd) and arrives there as a plain int."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return _received, (reduction.DupFd(self.fd),)


def _received(dup: Any) -> int:
    return int(dup.detach())


BEAT = struct.Struct("<q")  # a worker's heartbeat: the id of the task it is on


def beat_offset(worker: int) -> int:
    """Where worker `worker`'s heartbeat lies in the arena file."""
    return BEAT.size * worker


class Arena:
    """One heartbeat per worker (the task it started last), read by the supervisor to tell
    which task of a bundle a worker died or hung on."""

    def __init__(self, workers: int) -> None:
        self.size = beat_offset(max(1, workers))
        self.path = _shm_dir() / f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        # Kept open for the arena's life: replacement workers are handed this descriptor.
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(self.fd, self.size)
            self._mm = mmap.mmap(self.fd, self.size)
        except BaseException:
            os.close(self.fd)
            raise
        # Read for every busy worker on every poll: computed once.
        self._beat_at = [beat_offset(w) for w in range(max(1, workers))]

    def beat(self, worker: int) -> int:
        """The id of the task worker `worker` started last (0: none yet)."""
        return int(BEAT.unpack_from(self._mm, self._beat_at[worker])[0])

    def reset_beat(self, worker: int) -> None:
        BEAT.pack_into(self._mm, self._beat_at[worker], 0)

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(BufferError):
            self._mm.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
