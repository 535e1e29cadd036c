"""The service loop's intake: events from the feeders become candidates in the batcher.

Everything here runs in the loop's thread, one event at a time, so no state needs a lock.
A file becomes a candidate when it is ready: closed after writing, renamed into place,
or settled (seen unchanged for `settle_ms`). Files inotify saw written and not yet closed
are tracked in `writing` and never settle on their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import structlog

from ..batch import Batcher, Candidate
from ..config import Config
from ..feed.events import Event, EventQueue, EventsLost, FileEvent, Kind, ScanDone
from ..feed.names import NameFilter, inside
from ..feed.scan import Scanner
from ..feed.settle import Settler
from ..logthrottle import throttle
from .disposal import Disposal

log = structlog.get_logger("tiffsink")


class Intake:
    """Takes events off the queue and decides what each one means; the loop's thread only.

    Owns the settler and the set of files being written; hands candidates to the batcher,
    folders and lost events to the scanner, and known files to disposal.
    """

    def __init__(
        self,
        cfg: Config,
        q: EventQueue,
        batcher: Batcher,
        scanner: Scanner,
        disposal: Disposal,
    ) -> None:
        self.q, self.batcher, self.scanner, self.disposal = q, batcher, scanner, disposal
        self.root = cfg.watch.directory
        self.wanted = NameFilter.from_config(cfg.watch)
        self.excluded = cfg.excluded_folders()
        self.settler = Settler(cfg.watch.settle_ms, trust_mtime=not cfg.watch.polling)
        self.writing: set[str] = set()
        self.on_scan_done: Callable[[str], None] | None = None  # told why, after its log line

    def drain(self, limit: int = 5000) -> None:
        """Handle up to `limit` queued events, then the files that settled meanwhile."""
        for event in self.q.take(limit):
            self.handle(event)
        for path, _st in self.settler.due(self.writing):
            self.consider(path, Kind.READY)

    def handle(self, event: Event) -> None:
        match event:
            case FileEvent(Kind.WRITING, path):
                self.writing.add(path)
            case FileEvent(Kind.GONE, path):
                self.writing.discard(path)
            case FileEvent(Kind.READY, path):
                self.writing.discard(path)
                self.consider(path, Kind.READY)
            case FileEvent(Kind.SETTLE | Kind.SCANNED as kind, path):
                self.consider(path, kind)
            case FileEvent(Kind.FOLDER, path):
                if not inside(path, self.excluded):
                    self.scanner.start(Path(path), "new-folder")
            case FileEvent(Kind.KNOWN, path):
                self.disposal.known(path)
            case EventsLost(reason):
                throttle.warning("events.lost", by="reason", reason=reason, action="rescan")
                self.scanner.request_full()
            case ScanDone(why, files, queued, seconds):
                log.info("scan.done", why=why, files=files, queued=queued, s=round(seconds, 3))
                if self.on_scan_done is not None:
                    self.on_scan_done(why)

    def consider(self, path: str, kind: Kind) -> None:
        """A sighting of `path`: a candidate now, watched until it settles, or nothing."""
        if inside(path, self.excluded) or not self.wanted(path):
            return
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            self.settler.forget(path)
            return  # gone already: nothing to ingest, and a disappearance is never acted on
        if os.path.isdir(path) and not os.path.islink(path):
            return
        if kind is not Kind.READY and not self.settler.offer(path, st, self.writing):
            return
        self.settler.forget(path)
        self.batcher.add(Candidate(path, str(self.root), st.st_size, st.st_mtime_ns))
