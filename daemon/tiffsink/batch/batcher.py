"""Group ready files into batches: `max_files` files, or `max_wait_ms` after the first.

A batch is the unit of commit, so its size trades fsync cost per image against the
latency of the first file in it. Pending files are kept once per path (a second event for
a file already waiting costs nothing) in arrival order; memory is one entry per path.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from .candidate import Candidate


class Batcher:
    """Pending files and the batch deadline; used by one thread (the service loop)."""

    def __init__(
        self, max_files: int, max_wait_ms: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_files = max_files
        self.max_wait_s = max_wait_ms / 1000
        self.clock = clock
        self._pending: OrderedDict[str, Candidate] = OrderedDict()
        self._first_at: float | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, cand: Candidate) -> None:
        """Queue a file; a newer sighting of a waiting path replaces it in place."""
        old = self._pending.get(cand.path)
        if old is not None:
            cand.seen_at = min(old.seen_at, cand.seen_at)
        self._pending[cand.path] = cand
        if self._first_at is None:
            self._first_at = self.clock()

    def deadline(self) -> float | None:
        """When the oldest waiting file's max_wait expires (clock time), if any waits."""
        return None if self._first_at is None else self._first_at + self.max_wait_s

    def ready(self, flush: bool = False) -> bool:
        """A batch is due: enough files, the wait expired, or `flush` (backfill end, stop)."""
        if not self._pending:
            return False
        if flush or len(self._pending) >= self.max_files:
            return True
        dl = self.deadline()
        return dl is not None and self.clock() >= dl

    def take(self) -> list[Candidate]:
        """Up to max_files files, oldest first; the rest keep waiting."""
        out: list[Candidate] = []
        while self._pending and len(out) < self.max_files:
            out.append(self._pending.popitem(last=False)[1])
        self._first_at = self.clock() if self._pending else None
        return out
