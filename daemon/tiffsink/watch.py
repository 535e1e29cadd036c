"""Watching the inbox: the observer only enqueues; deciding what is ready happens here,
in the supervisor's loop, one event at a time.

A file is ready when its writer closed it after writing (inotify's IN_CLOSE_WRITE, which
the kernel also sends when a writer dies) or when it was renamed into place. Files seen
any other way (a scan, a polling observer on NFS/SMB, a folder that appeared) are ready
once their size and mtime stayed the same for `settle_ms`. Events can be lost (inotify's
queue overflows, the observer thread dies), so the caller reconciles by scanning.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from .config import WatchConfig
from .scan import NameFilter


@dataclass(frozen=True)
class Seen:
    """One thing the observer reported: kind is ready, settle, folder or lost."""

    kind: str
    path: str


class _Enqueue(FileSystemEventHandler):
    """The observer thread's only job: translate and enqueue, never block or decide."""

    def __init__(self, q: queue.Queue[Seen], polling: bool) -> None:
        self.q, self.polling = q, polling

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        if isinstance(event, FileClosedEvent):
            self.q.put(Seen("ready", src))
        elif isinstance(event, FileMovedEvent):
            self.q.put(Seen("gone", src))
            self.q.put(Seen("ready", os.fsdecode(event.dest_path)))
        elif isinstance(event, FileDeletedEvent):
            self.q.put(Seen("gone", src))
        elif isinstance(event, DirMovedEvent):
            self.q.put(Seen("folder", os.fsdecode(event.dest_path)))
        elif isinstance(event, DirCreatedEvent):
            self.q.put(Seen("folder", src))
        elif isinstance(event, FileModifiedEvent):
            # inotify: a writer has it open and its close event will follow; polling: no
            # close event ever comes, so the file must settle.
            self.q.put(Seen("settle" if self.polling else "writing", src))
        elif isinstance(event, FileCreatedEvent):
            # Also what inotify reports for a file moved in from outside the watch (no
            # IN_MOVED_FROM to pair with): no close follows that, so it must settle.
            self.q.put(Seen("settle", src))


class _OverflowSpy(logging.Handler):
    """watchdog only logs an inotify queue overflow; turn that log record into an event."""

    def __init__(self, q: queue.Queue[Seen]) -> None:
        super().__init__(logging.WARNING)
        self.q = q

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.q.put(Seen("lost", "inotify queue overflow"))


class Watcher:
    def __init__(self, cfg: WatchConfig, q: queue.Queue[Seen]) -> None:
        self.cfg, self.q = cfg, q
        self.observer: BaseObserver | None = None
        self._spy = _OverflowSpy(q)
        logging.getLogger("watchdog.observers").addHandler(self._spy)

    def start(self) -> None:
        if self.cfg.polling:
            obs: BaseObserver = PollingObserver(timeout=self.cfg.poll_interval_ms / 1000)
        else:
            obs = Observer()
        obs.schedule(
            _Enqueue(self.q, self.cfg.polling),
            str(self.cfg.directory),
            recursive=self.cfg.recursive,
        )
        obs.daemon = True
        obs.start()
        self.observer = obs

    def alive(self) -> bool:
        return self.observer is not None and self.observer.is_alive()

    def restart(self) -> None:
        """Replace a dead observer; the caller rescans for what it missed."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            if self.observer.is_alive():
                self.observer.join(5)
            self.observer = None

    def close(self) -> None:
        self.stop()
        logging.getLogger("watchdog.observers").removeHandler(self._spy)


class Settler:
    """Files seen without a close event: ready after `settle_ms` of unchanged size/mtime."""

    def __init__(self, settle_ms: int, trust_mtime: bool) -> None:
        self.settle_s = settle_ms / 1000
        # On a local disk mtime is our clock, so an old mtime already proves quiet; on
        # NFS/SMB it is the server's clock, so only our own repeated observations count.
        self.trust_mtime = trust_mtime
        self._watch: OrderedDict[str, tuple[int, int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._watch)

    def offer(
        self, path: str, st: os.stat_result, writing: set[str] | frozenset[str] = frozenset()
    ) -> bool:
        """True when the file is ready now; otherwise it is watched until it settles."""
        if (
            self.trust_mtime
            and path not in writing
            and time.time_ns() - st.st_mtime_ns >= self.settle_s * 1e9
        ):
            self._watch.pop(path, None)
            return True
        if path not in self._watch:
            self._watch[path] = (st.st_size, st.st_mtime_ns, time.monotonic())
        return False

    def forget(self, path: str) -> None:
        self._watch.pop(path, None)

    def due(
        self, writing: set[str] | frozenset[str] = frozenset()
    ) -> list[tuple[str, os.stat_result]]:
        """Files whose size/mtime held still for settle_ms; vanished ones are dropped.

        Paths in `writing` (inotify saw writes and no close yet) never settle: a writer
        pausing between chunks is not a finished file, its close event decides."""
        now = time.monotonic()
        out = []
        for path, (size, mtime, since) in list(self._watch.items()):
            if now - since < self.settle_s or path in writing:
                continue
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                del self._watch[path]  # gone before it settled: nothing to ingest
                continue
            if (st.st_size, st.st_mtime_ns) == (size, mtime):
                del self._watch[path]
                out.append((path, st))
            else:
                self._watch[path] = (st.st_size, st.st_mtime_ns, now)
        return out


def inside(path: str, folders: list[Path]) -> bool:
    """Whether `path` lies in one of `folders` (done/failed folders are never ingested)."""
    return any(os.path.commonpath([path, str(f)]) == str(f) for f in folders)


def wanted_filter(cfg: WatchConfig) -> NameFilter:
    return NameFilter(cfg.patterns, cfg.ignore_patterns)
