"""Which file versions a dataset already holds, asked from the supervisor's thread.

A read-only connection of its own, so lookups never wait on a commit that the committer
thread is running on the writer's connection; opened on first use.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from . import index
from .layout import Layout
from .records import CommittedPages

Version = tuple[str, int, int]  # (source path, size, mtime_ns)


class Lookup:
    """Exactly-once checks against committed rows and recorded failures."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._conn: sqlite3.Connection | None = None

    def _reader(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = index.connect(self.layout.index, readonly=True)
        return self._conn

    def known(self, versions: Sequence[Version]) -> set[Version]:
        """Versions with committed rows or failures."""
        return index.known_versions(self._reader(), versions)

    def committed_pages(self, paths: Sequence[str]) -> dict[str, CommittedPages]:
        """For the paths that have rows: the digests of their committed pages."""
        return index.committed_pages(self._reader(), paths)

    def ingested(self, source: str, size: int, mtime_ns: int) -> bool:
        """Whether this version has rows (not just a failure record)."""
        return index.ingested(self._reader(), source, size, mtime_ns)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
