"""Rows, recent records and history for the dashboard, read from the dataset on each
request: what the page shows survives restarts and reflects `tiffsink retry`, because
the index, not the daemon's memory, is where it comes from.

The HTTP threads open their own read-only view per request (an index connection and a
memmap or zarr array: about a millisecond), so nothing is kept in memory per row and no
handle is shared between threads. Only row numbers come from requests; no request text
ever becomes a path.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..dataset import display, index
from ..dataset.layout import Layout
from ..dataset.reader import Dataset
from ..errors import TiffsinkError


class RowImages:
    """The dataset at `directory`, as PNG rows and the latest records."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def png(self, row: int | None, max_side: int | None) -> bytes | None:
        """Row `row` (None: the newest) as PNG; None if there is no such committed row."""
        try:
            with Dataset(self.directory) as ds:
                n = len(ds)
                r = n - 1 if row is None else row
                if not 0 <= r < n:
                    return None
                return display.png(ds.take([r])[0], max_side)
        except TiffsinkError:
            return None  # no dataset yet (being created): nothing to show

    def recent(self, k: int) -> list[dict[str, Any]]:
        """The newest `k` committed rows, newest first: row, file name and page."""
        try:
            with Dataset(self.directory) as ds:
                n = len(ds)
                recs = index.row_records(ds.conn, max(0, n - k), n)
        except TiffsinkError:
            return []
        return [
            {"row": r.row, "source": os.path.basename(r.source), "page": r.page}
            for r in reversed(recs)
        ]

    def history(self, minutes: int = 60, failures: int = 20) -> dict[str, Any]:
        """Failure counts by reason, the newest failures and rows per minute over the last
        `minutes`, from the index; empty before the dataset exists."""
        lay = Layout.of(self.directory)
        try:
            conn = index.connect(lay.require().index, readonly=True)
        except TiffsinkError:
            return {"failed": {}, "recent_failures": [], "rows_per_minute": []}
        try:
            since = (time.time() // 60 - (minutes - 1)) * 60
            return {
                "failed": index.failure_counts(conn),
                "recent_failures": [
                    {"file": f.source, "reason": f.reason, "detail": f.detail, "at": f.at}
                    for f in index.recent_failures(conn, failures)
                ],
                "rows_per_minute": [list(m) for m in index.rows_per_minute(conn, since)],
            }
        except sqlite3.Error:  # the dataset is being created: no tables yet
            return {"failed": {}, "recent_failures": [], "rows_per_minute": []}
        finally:
            conn.close()
