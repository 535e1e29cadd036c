"""Watching the inbox: the observer thread translates filesystem events and enqueues.

Deciding what is ready happens in the service loop, one event at a time. A file is ready
when its writer closed it after writing (inotify's IN_CLOSE_WRITE, which the kernel also
sends when a writer dies) or when it was renamed into place; anything else must settle
(settle.py). Events can be lost (inotify's queue overflows, the observer thread dies),
so the loop reconciles by scanning.
"""

from __future__ import annotations

import logging
import os

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

from ..config import WatchConfig
from .events import EventQueue, EventsLost, FileEvent, Kind


class _Enqueue(FileSystemEventHandler):
    """The observer thread's only job: translate and enqueue, never block or decide."""

    def __init__(self, q: EventQueue, polling: bool) -> None:
        self.q, self.polling = q, polling

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        if isinstance(event, FileClosedEvent):
            self.q.put(FileEvent(Kind.READY, src))
        elif isinstance(event, FileMovedEvent):
            self.q.put(FileEvent(Kind.GONE, src))
            self.q.put(FileEvent(Kind.READY, os.fsdecode(event.dest_path)))
        elif isinstance(event, FileDeletedEvent):
            self.q.put(FileEvent(Kind.GONE, src))
        elif isinstance(event, DirMovedEvent):
            self.q.put(FileEvent(Kind.FOLDER, os.fsdecode(event.dest_path)))
        elif isinstance(event, DirCreatedEvent):
            self.q.put(FileEvent(Kind.FOLDER, src))
        elif isinstance(event, FileModifiedEvent):
            # inotify: a writer has it open and its close event will follow; polling: no
            # close event ever comes, so the file must settle.
            self.q.put(FileEvent(Kind.SETTLE if self.polling else Kind.WRITING, src))
        elif isinstance(event, FileCreatedEvent):
            # Also what inotify reports for a file moved in from outside the watch (no
            # IN_MOVED_FROM to pair with): no close follows that, so it must settle.
            self.q.put(FileEvent(Kind.SETTLE, src))


class _OverflowSpy(logging.Handler):
    """watchdog only logs an inotify queue overflow; turn that log record into an event."""

    def __init__(self, q: EventQueue) -> None:
        super().__init__(logging.WARNING)
        self.q = q

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.q.put(EventsLost("inotify queue overflow"))


class Watcher:
    """Owns the watchdog observer (inotify, or polling for network shares) and its
    thread; `restart` replaces an observer that died."""

    def __init__(self, cfg: WatchConfig, q: EventQueue) -> None:
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
