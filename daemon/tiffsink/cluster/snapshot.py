"""An index snapshot for readers on other hosts of a cluster dataset.

SQLite's WAL mode needs every process on one host (sqlite.org/wal.html), and the index
of a cluster dataset lives on a shared filesystem. So the writer also publishes
`index.snapshot.sqlite`: a consistent copy (SQLite's backup API) written to tmp/,
fsynced and renamed into place, at the end of a cluster run and at most every
SNAPSHOT_EVERY_S during one. Readers on other hosts open it with
`open_dataset(path, snapshot=True)`, which reads it as an immutable file (no locks, no
WAL); it may lag the live index, never lead it, and zarr.json's shape (raised after each
commit) says which rows exist.
"""

from __future__ import annotations

import os
import sqlite3
import uuid

from ..dataset import DatasetWriter
from ..dataset.fsio import fsync_dir

SNAPSHOT_EVERY_S = 30.0


def publish_snapshot(writer: DatasetWriter) -> None:
    lay = writer.layout
    tmp = lay.tmp / f"index.snapshot.{uuid.uuid4().hex}.tmp"
    dest = sqlite3.connect(tmp)
    try:
        writer.conn.backup(dest)
        dest.execute("PRAGMA journal_mode=DELETE")
        dest.commit()
    finally:
        dest.close()
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, lay.snapshot)
    fsync_dir(lay.directory)
