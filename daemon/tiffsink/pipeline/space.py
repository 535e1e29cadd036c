"""Disk-full pause: after ENOSPC, intake stops until the dataset's disk has room again.

Free space is re-checked at most every FULL_RECHECK_S (statvfs is cheap, but the loop
runs every few ms); intake resumes once there is room for two batches plus 1 MiB, so
it does not flap at the edge.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import structlog

log = structlog.get_logger("tiffsink")

FULL_RECHECK_S = 5.0


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class SpaceGuard:
    """Whether intake is paused for space; used by the supervisor's main thread."""

    def __init__(
        self,
        directory: Path,
        need_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        free_bytes: Callable[[Path], int] = _free_bytes,
    ) -> None:
        self.directory, self.need_bytes = directory, need_bytes
        self.clock, self.free_bytes = clock, free_bytes
        self.full_since: float | None = None
        self._checked = 0.0

    @property
    def paused(self) -> bool:
        return self.full_since is not None

    def pause(self) -> None:
        self.full_since = self._checked = self.clock()

    def ok(self) -> bool:
        """True unless paused and the disk still lacks room (re-checked at most every 5 s)."""
        if self.full_since is None:
            return True
        now = self.clock()
        if now - self._checked < FULL_RECHECK_S:
            return False
        self._checked = now
        free = self.free_bytes(self.directory)
        if free < self.need_bytes:
            log.warning(
                "dataset.disk_full",
                free_bytes=free,
                need_bytes=self.need_bytes,
                since_s=round(now - self.full_since),
            )
            return False
        log.info("dataset.space_available", free_bytes=free)
        self.full_since = None
        return True
