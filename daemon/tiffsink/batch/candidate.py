"""A file a feeder believes is complete: the unit the batcher groups and the pipeline takes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Candidate:
    """Path, the root it was found under (links may not leave it), and the size/mtime the
    feeder saw (None when it did not stat); `seen_at` starts the arrival-latency clock.
    `checked`: the feeder has just looked this version up in the index and not found it,
    so the pipeline need not ask again (the backfill: each path once, one writer); it is
    cleared whenever the candidate goes back to a queue."""

    path: str
    root: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    seen_at: float = field(default_factory=time.monotonic)
    checked: bool = False

    def version(self) -> tuple[str, int, int] | None:
        """(path, size, mtime_ns) as the feeder saw it, if it did."""
        if self.size is None or self.mtime_ns is None:
            return None
        return (self.path, self.size, self.mtime_ns)
