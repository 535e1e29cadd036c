"""Threads that die: each logs an event and is revived, with backoff, by the service loop.

A thread that ends by an exception would otherwise print a plain traceback to stderr
(not JSON, so `jq` filters miss it) and leave its job undone: a scan that never
finishes, a dashboard that no longer answers. While the daemon runs, `threading.excepthook`
logs `thread.died` (JSON, with the traceback as a field) and queues the death; the loop
takes the queue (`take`), marks health unhealthy and revives what the thread did.
`Backoff` spaces the revivals of something that dies again at once (a folder that cannot
be listed, no free file descriptors), so a fault never becomes a busy loop of restarts.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from types import TracebackType
from typing import Any

import structlog

log = structlog.get_logger("tiffsink")


class ThreadDeaths:
    """Context manager: `threading.excepthook` while the daemon runs, restored after."""

    def __init__(self) -> None:
        self._dead: deque[tuple[str, str]] = deque()
        self._previous: Any = None

    def _hook(self, args: threading.ExceptHookArgs) -> None:
        """Runs in the dying thread: log, queue, nothing else (the loop decides)."""
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "unknown"
        error = f"{args.exc_type.__name__}: {args.exc_value}"
        log.error(
            "thread.died",
            thread=name,
            error=error,
            traceback="".join(
                traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)
            ),
        )
        self._dead.append((name, error))  # deque.append is thread-safe

    def take(self) -> list[tuple[str, str]]:
        """(thread name, error) of each thread that died since the last call."""
        out = []
        while self._dead:
            out.append(self._dead.popleft())
        return out

    def __enter__(self) -> ThreadDeaths:
        self._previous = threading.excepthook
        threading.excepthook = self._hook
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        threading.excepthook = self._previous


class Backoff:
    """When something that keeps failing may be tried again: 1 s, 2 s, 4 s ... max_s apart,
    back to the start once it has worked."""

    def __init__(self, first_s: float = 1.0, max_s: float = 60.0) -> None:
        self.first_s, self.max_s = first_s, max_s
        self.failures = 0
        self.next_at = 0.0

    def failed(self, now: float | None = None) -> float:
        """Count a failure; returns the delay until the next try."""
        now = time.monotonic() if now is None else now
        delay: float = min(self.max_s, self.first_s * 2.0**self.failures)
        self.failures += 1
        self.next_at = now + delay
        return delay

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def succeeded(self) -> None:
        self.failures = 0
        self.next_at = 0.0
