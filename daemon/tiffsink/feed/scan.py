"""List the files under a folder that we should ingest, and scan folders in threads.

`walk` is shared by the backfill and by the daemon's scans. Symlinked folders are not
descended (a loop or an escape from the root); symlinked and special files are yielded,
so the decoder records why they are refused. `Scanner` runs walks in threads for the
daemon (at start, on a timer, after lost events, for a new folder) and only enqueues.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..dataset import index
from ..dataset.layout import Layout
from .events import EventQueue, FileEvent, Kind, ScanDone
from .names import NameFilter


def _entries(root: Path, recursive: bool, exclude: Iterable[Path]) -> Iterator[os.DirEntry[str]]:
    """Every non-directory entry under `root`, folder by folder, sub-folders in name order.

    Iterated lazily, in directory order: a folder of 100k files must not cost 100k DirEntry
    objects at once (the backfill's memory stays flat). Folders are told apart by d_type,
    with no stat per entry on the usual file systems.
    """
    skip = {os.path.realpath(p) for p in exclude}
    stack = [os.path.abspath(root)]
    while stack:
        try:
            it = os.scandir(stack.pop())
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        subdirs: list[str] = []
        with it:
            for e in it:
                try:
                    is_dir = e.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if not is_dir:
                    yield e
                elif recursive and os.path.realpath(e.path) not in skip:
                    subdirs.append(e.path)
        subdirs.sort()
        stack.extend(reversed(subdirs))


def walk(
    root: Path, wanted: NameFilter, recursive: bool = True, exclude: Iterable[Path] = ()
) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (absolute path, lstat) for every wanted non-directory entry under `root`."""
    for e in _entries(root, recursive, exclude):
        if wanted(e.path):
            try:
                yield e.path, e.stat(follow_symlinks=False)
            except OSError:
                continue  # gone since it was listed


def count_files(
    root: Path, wanted: NameFilter, recursive: bool = True, exclude: Iterable[Path] = ()
) -> int:
    """How many files `walk` would yield, from names alone (no stat per file)."""
    return sum(1 for e in _entries(root, recursive, exclude) if wanted(e.path))


class Scanner:
    """Walks folders in background threads (one at a time per request) and enqueues what
    it finds: SCANNED for versions the index does not know, KNOWN for ones it does (when
    the service acts on sources), then one ScanDone. Decides nothing itself."""

    def __init__(
        self,
        q: EventQueue,
        dataset: Layout,
        wanted: NameFilter,
        recursive: bool,
        exclude: list[Path],
        report_known: bool,
    ) -> None:
        self.q, self.dataset, self.wanted = q, dataset, wanted
        self.recursive, self.exclude, self.report_known = recursive, exclude, report_known
        self._threads: list[threading.Thread] = []
        self._full_pending = False

    def start(self, folder: Path, why: str) -> None:
        t = threading.Thread(
            target=self._scan, args=(folder, why), daemon=True, name=f"tiffsink-scan-{why}"
        )
        self._threads.append(t)
        t.start()

    def request_full(self) -> None:
        """Ask for a full reconcile scan; it starts once no scan is running."""
        self._full_pending = True

    def start_pending(self, root: Path) -> None:
        """Start the requested full scan if no scan runs now (a second would find the same)."""
        self._threads = [t for t in self._threads if t.is_alive()]
        if self._full_pending and not self._threads:
            self._full_pending = False
            self.start(root, "reconcile")

    def _scan(self, folder: Path, why: str) -> None:
        t0 = time.monotonic()
        n = queued = 0
        conn = index.connect(self.dataset.index, readonly=True)
        try:
            for path, st in walk(folder, self.wanted, self.recursive, self.exclude):
                n += 1
                if index.known_versions(conn, [(path, st.st_size, st.st_mtime_ns)]):
                    if self.report_known:  # finish a move/delete a crash cut short
                        self.q.put(FileEvent(Kind.KNOWN, path))
                    continue
                queued += 1
                self.q.put(FileEvent(Kind.SCANNED, path))
        finally:
            conn.close()
        self.q.put(ScanDone(why, n, queued, time.monotonic() - t0))
