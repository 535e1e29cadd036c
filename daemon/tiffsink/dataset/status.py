"""`tiffsink status`: what a dataset holds and whether a daemon is writing it.

Reads only committed state through a read-only index connection, so it is safe (and
cheap) while the daemon runs.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from . import index, lock
from .formats import detect
from .layout import Layout
from .meta import storage_from_meta


def _bytes_on_disk(lay: Layout) -> int:
    """What the rows take on disk, as their format counts it."""
    found = detect(lay)
    return found.bytes_on_disk(lay) if found is not None else 0


def collect(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Every figure `tiffsink status` shows, as plain JSON-able values."""
    lay = Layout.of(directory).require()
    conn = index.connect(lay.index, readonly=True)
    try:
        meta = index.read_meta(conn)
        now = time.time()
        last = index.last_ingested_at(conn)
        failures = index.failure_counts(conn)
        last_hour = index.rows_since(conn, now - 3600)
        return {
            "dataset": str(lay.directory),
            "rows": index.committed_rows(conn),
            "files": index.file_count(conn),
            "format": storage_from_meta(meta).format,
            "bytes": _bytes_on_disk(lay),
            "last_commit": last,
            "last_commit_age_s": round(now - last, 1) if last else None,
            "rows_per_s_last_minute": round(index.rows_since(conn, now - 60) / 60, 3),
            "rows_per_s_last_hour": round(last_hour / 3600, 3),
            "rows_last_hour": last_hour,
            "failures": failures,
            "failures_total": sum(failures.values()),
            "writer_pid": lock.holder(lay),
            "image": meta.get("image"),
            "label": meta.get("label") or None,
            "labels": index.value_counts(conn, meta["label"]) if meta.get("label") else {},
            "created_at": meta.get("created_at"),
            "tiffsink_version": meta.get("tiffsink_version"),
            "publish": _publish_state(lay),
        }
    finally:
        conn.close()


def _publish_state(lay: Layout) -> dict[str, Any] | None:
    """What the dataset's publisher last wrote (`publish.json`), and whether one runs."""
    try:
        doc: dict[str, Any] = json.loads(lay.publish_state.read_bytes())
    except (OSError, ValueError):
        return None
    doc["running"] = lock.holder(lay, lay.publish_lock) is not None
    return doc
