"""`index.sqlite`: which row came from which file version, what failed and why.

Every SQL statement of tiffsink lives in this module; callers get typed records
(`records.py`, re-exported here) and plain numbers back, so the schema can change in one
place.

The SQLite transaction that inserts a batch's rows is the commit point of the dataset
(see writer.py), so the connection runs in WAL mode with synchronous=FULL: once COMMIT
returns, the rows survive a power cut. Readers use their own read-only connections and
see only committed transactions.
"""

from __future__ import annotations

import json
import operator
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from .records import CommittedPages, FailureRecord, GrownRecord, RowRecord

# 2: images.meta (JSON per row); 3: images.page_hash and grown_versions. Older indexes
# gain what they lack when a writer opens them.
FORMAT_VERSION = 3
KNOWN_CHUNK = 400  # paths per lookup query (SQLite allows 32766 parameters)

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    row INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    page INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    src_height INTEGER NOT NULL,
    src_width INTEGER NOT NULL,
    src_dtype TEXT NOT NULL,
    src_channels INTEGER NOT NULL,
    ingested_at REAL NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    page_hash TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS images_version ON images(source, size, mtime_ns, page);
CREATE INDEX IF NOT EXISTS images_ingested_at ON images(ingested_at);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS failures_version ON failures(source, size, mtime_ns);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS grown_versions (
    source TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    base_size INTEGER NOT NULL,
    base_mtime_ns INTEGER NOT NULL,
    first_page INTEGER NOT NULL,
    pages INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS grown_version ON grown_versions(source, size, mtime_ns);
"""


_ROW = operator.attrgetter(*(f.name for f in fields(RowRecord)))
_FAILURE = operator.attrgetter(*(f.name for f in fields(FailureRecord)))
_GROWN = operator.attrgetter(*(f.name for f in fields(GrownRecord)))


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """Open the index; writers get WAL + synchronous=FULL, readers a read-only handle."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
        conn.execute("PRAGMA query_only=1")
    else:
        # Used by the pipeline's committer thread; never by two threads at once.
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create missing tables (a crash right after connect leaves an empty file), and
    migrate an older index: its rows gain an empty `meta` (format 1) and an empty
    `page_hash` (format 2: their pages never count as unchanged in a grown file), and it
    gains `grown_versions`. ADD COLUMN does not rewrite the table: cheap at any size."""
    conn.executescript(SCHEMA)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(images)")]
    if "meta" not in cols or "page_hash" not in cols:
        with transaction(conn):
            if "meta" not in cols:
                conn.execute("ALTER TABLE images ADD COLUMN meta TEXT NOT NULL DEFAULT '{}'")
            conn.execute("ALTER TABLE images ADD COLUMN page_hash TEXT NOT NULL DEFAULT ''")
            if read_meta(conn):  # an index whose creation committed: say what it is now
                conn.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('format_version', ?)",
                    (json.dumps(FORMAT_VERSION),),
                )


def create(conn: sqlite3.Connection, meta: dict[str, Any]) -> None:
    conn.executescript(SCHEMA)
    with transaction(conn):
        for k, v in meta.items():
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, json.dumps(v)))


class transaction:
    """BEGIN IMMEDIATE ... COMMIT on an autocommit connection; ROLLBACK on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def mirror_rows(conn: sqlite3.Connection, first: int, rows: Sequence[RowRecord]) -> None:
    """A reader's copy of a published index: rows from `first` on become `rows`."""
    with transaction(conn):
        conn.execute("DELETE FROM images WHERE row >= ?", (first,))
        conn.executemany("INSERT INTO images VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", map(_ROW, rows))


def set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
    with transaction(conn):
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))


def read_meta(conn: sqlite3.Connection) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}


def committed_rows(conn: sqlite3.Connection) -> int:
    """N: rows are 0..N-1 with no gaps (verify checks the no-gaps part)."""
    (n,) = conn.execute("SELECT COALESCE(MAX(row) + 1, 0) FROM images").fetchone()
    return int(n)


def insert(
    conn: sqlite3.Connection,
    rows: Sequence[RowRecord],
    failures: Sequence[FailureRecord],
    grown: Sequence[GrownRecord] = (),
) -> None:
    """The commit point: one transaction with every row, failure and grown version of a
    batch.

    A source that becomes rows loses the failure records of its earlier versions in the
    same transaction (a fixed file is no longer failed; the log keeps the history)."""
    with transaction(conn):
        # attrgetter, not dataclasses.astuple: astuple deep-copies, per row, in the commit.
        conn.executemany("INSERT INTO images VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", map(_ROW, rows))
        fixed = {(r.source,) for r in rows}
        if fixed:
            conn.executemany("DELETE FROM failures WHERE source=?", fixed)
        conn.executemany(
            "INSERT OR REPLACE INTO failures (source, size, mtime_ns, reason, detail, at) "
            "VALUES (?,?,?,?,?,?)",
            map(_FAILURE, failures),
        )
        if grown:
            conn.executemany(
                "INSERT INTO grown_versions VALUES (?,?,?,?,?,?,?,?)", map(_GROWN, grown)
            )


def known_versions(
    conn: sqlite3.Connection, versions: Iterable[tuple[str, int, int]]
) -> set[tuple[str, int, int]]:
    """Which (source, size, mtime_ns) already have rows or a recorded failure.

    One query per KNOWN_CHUNK paths (both tables' unique indexes start with source), so a
    batch costs one round trip, not one per file."""
    want = set(versions)
    out: set[tuple[str, int, int]] = set()
    paths = sorted({v[0] for v in want})
    for i in range(0, len(paths), KNOWN_CHUNK):
        chunk = paths[i : i + KNOWN_CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT source, size, mtime_ns FROM images WHERE source IN ({marks}) "
            f"UNION SELECT source, size, mtime_ns FROM failures WHERE source IN ({marks}) "
            f"UNION SELECT source, size, mtime_ns FROM grown_versions WHERE source IN ({marks})",
            (*chunk, *chunk, *chunk),
        )
        out.update(v for v in rows if v in want)
    return out


def committed_pages(conn: sqlite3.Connection, paths: Sequence[str]) -> dict[str, CommittedPages]:
    """For each path that has rows: its committed pages (one query per KNOWN_CHUNK paths,
    then one per path found; paths without rows cost only the first)."""
    bases: dict[str, tuple[int, int]] = {}
    for i in range(0, len(paths), KNOWN_CHUNK):
        chunk = paths[i : i + KNOWN_CHUNK]
        marks = ",".join("?" * len(chunk))
        # SQLite takes the bare columns from the row that holds MAX(row): the latest page 0.
        for source, size, mtime, _ in conn.execute(
            f"SELECT source, size, mtime_ns, MAX(row) FROM images "
            f"WHERE source IN ({marks}) AND page = 0 GROUP BY source",
            chunk,
        ):
            bases[source] = (size, mtime)
    out = {}
    for source, (size, mtime) in bases.items():
        pages = conn.execute(
            "SELECT page, page_hash FROM images WHERE source = ?1 AND ("
            "(size = ?2 AND mtime_ns = ?3) OR (size, mtime_ns) IN (SELECT size, mtime_ns "
            "FROM grown_versions WHERE source = ?1 AND base_size = ?2 AND base_mtime_ns = ?3)"
            ") ORDER BY page",
            (source, size, mtime),
        ).fetchall()
        if [p for p, _ in pages] == list(range(len(pages))):
            out[source] = CommittedPages((size, mtime), tuple(h for _, h in pages))
    return out


def grown_versions(conn: sqlite3.Connection) -> list[GrownRecord]:
    """Every grown version, oldest first (export carries them over)."""
    cur = conn.execute("SELECT * FROM grown_versions ORDER BY rowid")
    return [GrownRecord(*r) for r in cur]


def rows_for_source(conn: sqlite3.Connection, source: str) -> list[RowRecord]:
    cur = conn.execute("SELECT * FROM images WHERE source=? ORDER BY row", (source,))
    return [RowRecord(*r) for r in cur]


def row_records(conn: sqlite3.Connection, start: int, stop: int) -> list[RowRecord]:
    """Records of rows start..stop-1, in row order."""
    cur = conn.execute(
        "SELECT * FROM images WHERE row >= ? AND row < ? ORDER BY row", (start, stop)
    )
    return [RowRecord(*r) for r in cur]


def meta_column(conn: sqlite3.Connection, n: int) -> list[str]:
    """`meta` of rows 0..n-1, in row order ('{}' for an index without the column)."""
    cols = [r[1] for r in conn.execute("PRAGMA table_info(images)")]
    if "meta" not in cols:
        return ["{}"] * n
    return [m for (m,) in conn.execute("SELECT meta FROM images WHERE row < ? ORDER BY row", (n,))]


def rows_where(conn: sqlite3.Connection, equals: dict[str, Any], n: int) -> list[int]:
    """Row numbers (< n) whose meta has every key equal to the value, compared with its
    JSON type: `True` matches only true (SQLite's json_extract gives 1 for both), a
    number only a number, a string only a string, None only null."""
    sql = "SELECT row FROM images WHERE row < ?"
    args: list[Any] = [n]
    for k, v in equals.items():
        path = json_path(k)
        if v is None or isinstance(v, bool):
            sql += " AND json_type(meta, ?) = ?"
            args += [path, "null" if v is None else "true" if v else "false"]
            continue
        kinds = "'integer', 'real'" if isinstance(v, int | float) else "'text'"
        sql += f" AND json_type(meta, ?) IN ({kinds}) AND json_extract(meta, ?) = ?"
        args += [path, path, v]
    return [r for (r,) in conn.execute(sql + " ORDER BY row", args)]


def value_counts(conn: sqlite3.Connection, key: str) -> dict[str, int]:
    """How many rows carry each value of a metadata key, most first."""
    if "meta" not in [r[1] for r in conn.execute("PRAGMA table_info(images)")]:
        return {}
    cur = conn.execute(
        "SELECT json_extract(meta, ?) AS v, COUNT(*) AS n FROM images "
        "WHERE v IS NOT NULL GROUP BY v ORDER BY n DESC, v",
        (json_path(key),),
    )
    return {str(v): n for v, n in cur}


def json_path(key: str) -> str:
    """The JSON path of a top-level key, quoted so any key name is taken literally."""
    return '$."' + key.replace('"', '""') + '"'


def row_record(conn: sqlite3.Connection, row: int) -> RowRecord | None:
    r = conn.execute("SELECT * FROM images WHERE row=?", (row,)).fetchone()
    return RowRecord(*r) if r else None


def failures(conn: sqlite3.Connection, reason: str | None = None) -> list[FailureRecord]:
    q = "SELECT source, size, mtime_ns, reason, detail, at FROM failures"
    cur = (
        conn.execute(q + " WHERE reason=? ORDER BY at", (reason,))
        if reason
        else conn.execute(q + " ORDER BY at")
    )
    return [FailureRecord(*r) for r in cur]


def forget_failures(conn: sqlite3.Connection, reason: str | None = None) -> int:
    """Delete failure records so those file versions are tried again; returns how many."""
    with transaction(conn):
        if reason:
            cur = conn.execute("DELETE FROM failures WHERE reason=?", (reason,))
        else:
            cur = conn.execute("DELETE FROM failures")
    return cur.rowcount


def ingested(conn: sqlite3.Connection, source: str, size: int, mtime_ns: int) -> bool:
    """Whether this file version is committed as rows (its own, or a grown version's
    earlier rows), not just a failure record."""
    q = (
        "SELECT 1 FROM images WHERE source=?1 AND size=?2 AND mtime_ns=?3 UNION ALL "
        "SELECT 1 FROM grown_versions WHERE source=?1 AND size=?2 AND mtime_ns=?3 LIMIT 1"
    )
    return conn.execute(q, (source, size, mtime_ns)).fetchone() is not None


def continuity_problem(conn: sqlite3.Connection) -> str | None:
    """Why rows are not exactly 0..N-1, or None when they are (rows are positional)."""
    (count, low, high) = conn.execute(
        "SELECT COUNT(*), COALESCE(MIN(row), 0), COALESCE(MAX(row), -1) FROM images"
    ).fetchone()
    if count == high + 1 and low == 0:
        return None
    return f"rows are not continuous from 0: {count} rows, max row {high}"


def quick_check(conn: sqlite3.Connection) -> str:
    """SQLite's own structural check: "ok" or the first problems it found."""
    (check,) = conn.execute("PRAGMA quick_check").fetchone()
    return str(check)


def duplicate_versions(
    conn: sqlite3.Connection, limit: int = 5
) -> list[tuple[str, int, int, int, int]]:
    """(source, size, mtime_ns, page, count) of pages indexed more than once."""
    return conn.execute(
        "SELECT source, size, mtime_ns, page, COUNT(*) FROM images "
        "GROUP BY source, size, mtime_ns, page HAVING COUNT(*) > 1 LIMIT ?",
        (limit,),
    ).fetchall()


def last_ingested_at(conn: sqlite3.Connection) -> float | None:
    (last,) = conn.execute("SELECT MAX(ingested_at) FROM images").fetchone()
    return None if last is None else float(last)


def rows_since(conn: sqlite3.Connection, since: float) -> int:
    (n,) = conn.execute("SELECT COUNT(*) FROM images WHERE ingested_at >= ?", (since,)).fetchone()
    return int(n)


def rows_per_minute(conn: sqlite3.Connection, since: float) -> list[tuple[int, int]]:
    """(unix minute, rows committed in it) since `since`, oldest first; minutes without
    rows are left out. Uses the ingested_at index: one range scan."""
    cur = conn.execute(
        "SELECT CAST(ingested_at / 60 AS INTEGER) * 60 AS m, COUNT(*) FROM images "
        "WHERE ingested_at >= ? GROUP BY m ORDER BY m",
        (since,),
    )
    return [(int(m), int(n)) for m, n in cur]


def recent_failures(conn: sqlite3.Connection, limit: int) -> list[FailureRecord]:
    """The newest `limit` failure records, newest first."""
    cur = conn.execute(
        "SELECT source, size, mtime_ns, reason, detail, at FROM failures "
        "ORDER BY at DESC, id DESC LIMIT ?",
        (limit,),
    )
    return [FailureRecord(*r) for r in cur]


def file_count(conn: sqlite3.Connection) -> int:
    """Distinct file versions with rows (a multi-page file counts once)."""
    (n,) = conn.execute(
        "SELECT COUNT(*) FROM (SELECT DISTINCT source, size, mtime_ns FROM images)"
    ).fetchone()
    return int(n)


def failure_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {
        str(r): int(n)
        for r, n in conn.execute("SELECT reason, COUNT(*) FROM failures GROUP BY reason")
    }


def now() -> float:
    return time.time()
