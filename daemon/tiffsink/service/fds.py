"""The process's own file descriptors: the limit it relies on, and how many are open.

With systemd's default soft limit of 1,024, a thousand idle HTTP connections used to
take every descriptor: SQLite could not open the index for a scan and the next worker
could not be spawned (EMFILE), and the daemon died. The unit sets `LimitNOFILE=` to
NOFILE and the daemon raises its own soft limit towards it where the hard limit allows
(a start outside systemd); the HTTP server takes at most a quarter of what is there
(http_connections). /metrics shows the count, and health turns unhealthy past
UNHEALTHY_FRACTION of the soft limit, so a leak is restarted before it breaks a commit.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Callable

NOFILE = 8192  # the unit's LimitNOFILE=, and the soft limit the daemon asks for
HTTP_CONNECTIONS = 512  # the HTTP server's ceiling; a quarter of the soft limit below that
UNHEALTHY_FRACTION = 0.9
SAMPLE_EVERY_S = 1.0  # counting /proc/self/fd is ~0.1 ms; at most once a second


def soft_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def raise_soft_limit(wanted: int = NOFILE) -> int:
    """Raise the soft RLIMIT_NOFILE to `wanted` (never above the hard limit, never down);
    returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        # Not allowed here: keep what there is; http_connections adapts.
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return soft_limit()


def http_connections(limit: int | None = None) -> int:
    """Concurrent HTTP connections allowed under a soft limit of `limit` descriptors."""
    n = soft_limit() if limit is None else limit
    return max(8, min(HTTP_CONNECTIONS, n // 4))


def count_open() -> int:
    """Open descriptors of this process (Linux /proc), or -1 where that cannot be read."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the one listdir itself holds
    except OSError:
        return -1


class FdWatch:
    """The open-descriptor count, sampled at most every SAMPLE_EVERY_S, for /metrics and
    health; read from any thread."""

    def __init__(
        self,
        count: Callable[[], int] = count_open,
        limit: Callable[[], int] = soft_limit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._count, self.limit, self._clock = count, limit, clock
        self._n, self._at = 0, float("-inf")

    def count(self) -> int:
        now = self._clock()
        if now - self._at >= SAMPLE_EVERY_S:
            self._n, self._at = self._count(), now
        return self._n

    def problem(self) -> str | None:
        """Why health is bad, or None: past UNHEALTHY_FRACTION of the soft limit."""
        n, limit = self.count(), self.limit()
        if n > UNHEALTHY_FRACTION * limit:
            return f"{n} of {limit} file descriptors open (RLIMIT_NOFILE): a leak, or too many"
        return None
