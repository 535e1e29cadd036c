"""What feeders tell the service loop: typed events on one queue.

The observer thread and the scanner threads only put these on the queue; the service
loop alone takes them off and decides. Three shapes: a file event (a kind and a path),
events lost (inotify overflowed or the observer died: rescan), and a scan's summary.
"""

from __future__ import annotations

import contextlib
import enum
import queue
from dataclasses import dataclass


class Kind(enum.Enum):
    """What a file event says about its path."""

    READY = "ready"  # closed after writing (IN_CLOSE_WRITE) or renamed into place
    WRITING = "writing"  # inotify saw a write: its close event will follow
    SETTLE = "settle"  # seen with no close to come (created, moved in, polled): must settle
    GONE = "gone"  # deleted or renamed away
    FOLDER = "folder"  # a folder appeared: scan it, inotify missed what is already inside
    SCANNED = "scanned"  # a scan found a version the index does not know
    KNOWN = "known"  # a scan found a committed or failed version still in the inbox


@dataclass(frozen=True)
class FileEvent:
    """Something happened to the file (or folder) at `path`."""

    kind: Kind
    path: str


@dataclass(frozen=True)
class EventsLost:
    """Some events never arrived; the loop reconciles with a full scan."""

    reason: str


@dataclass(frozen=True)
class ScanDone:
    """A scan finished; logged as scan.done."""

    why: str  # start, reconcile, new-folder
    files: int  # wanted files seen
    queued: int  # of those, versions the index did not know
    seconds: float


Event = FileEvent | EventsLost | ScanDone


class EventQueue:
    """The one queue from feeder threads to the service loop: any thread may `put`, only
    the loop `wait`s and `take`s.

    A queue.Queue, not a SimpleQueue: the loop blocks in get(timeout) while SIGTERM
    arrives, and SimpleQueue.get(timeout) was seen to block forever when a signal
    interrupted it (a stress test caught the daemon ignoring SIGTERM there).
    """

    def __init__(self) -> None:
        self._q: queue.Queue[Event] = queue.Queue()
        self._early: list[Event] = []  # taken off the queue by `wait`

    def put(self, event: Event) -> None:
        self._q.put(event)

    def wait(self, timeout_s: float) -> None:
        """Return when an event arrives, or after `timeout_s`."""
        with contextlib.suppress(queue.Empty):
            self._early.append(self._q.get(timeout=timeout_s))

    def take(self, limit: int) -> list[Event]:
        """Up to `limit` events, oldest first, without blocking."""
        out, self._early = self._early, []
        while len(out) < limit:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                break
        return out
