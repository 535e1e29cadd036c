"""`tiffsink verify`: check that header, index and file length tell the same story."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import index, npyhead
from .config import ImageSpec
from .errors import TiffsinkError
from .store import IMAGES, INDEX, DatasetWriter, lock_holder


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _spec_from_meta(meta: dict[str, object]) -> ImageSpec:
    image = dict(meta["image"])  # type: ignore[call-overload]
    if isinstance(image.get("intensity"), list):
        image["intensity"] = tuple(image["intensity"])
    return ImageSpec(**image)


def verify(directory: str | os.PathLike[str]) -> Report:
    """Every inconsistency as one line; a lagging header or uncommitted tail is a note
    when a writer holds the dataset (that is a commit in progress), a problem otherwise."""
    d = Path(directory)
    rep = Report()
    images, idx = d / IMAGES, d / INDEX
    for p in (images, idx):
        if not p.exists():
            rep.problems.append(f"{p}: missing")
    if not rep.ok:
        return rep
    conn = index.connect(idx, readonly=True)
    try:
        (check,) = conn.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            rep.problems.append(f"{idx}: quick_check: {check}")
        spec = _spec_from_meta(index.read_meta(conn))
        n = index.committed_rows(conn)
        (count,) = conn.execute("SELECT COUNT(*) FROM images").fetchone()
        (low,) = conn.execute("SELECT COALESCE(MIN(row), 0) FROM images").fetchone()
        if count != n or low != 0:
            rep.problems.append(
                f"{idx}: rows are not continuous from 0: {count} rows, max row {n - 1}"
            )
        dup = conn.execute(
            "SELECT source, size, mtime_ns, page, COUNT(*) FROM images "
            "GROUP BY source, size, mtime_ns, page HAVING COUNT(*) > 1 LIMIT 5"
        ).fetchall()
        for s, size, mt, page, c in dup:
            rep.problems.append(f"{s} (size {size}, mtime_ns {mt}, page {page}): {c} rows")
    finally:
        conn.close()
    with images.open("rb") as fh:
        head = fh.read(npyhead.HEADER_BYTES)
    try:
        header_n, shape, descr = npyhead.parse(head)
    except (ValueError, SyntaxError) as e:
        rep.problems.append(f"{images}: bad header: {e}")
        return rep
    if shape != spec.row_shape or descr != npyhead.descr(spec.dtype):
        rep.problems.append(f"{images}: header rows {shape} {descr} differ from the index's spec")
    size = images.stat().st_size
    want = npyhead.HEADER_BYTES + n * spec.row_bytes
    busy = lock_holder(d) is not None
    if size < want:
        rep.problems.append(f"{images}: {size} bytes, but {n} committed rows need {want}")
    elif size > want:
        msg = f"{images}: {size - want} bytes past the committed rows (an unfinished batch)"
        (rep.notes if busy else rep.problems).append(msg)
    if header_n > n:
        rep.problems.append(f"{images}: header claims {header_n} rows, index committed {n}")
    elif header_n < n:
        msg = f"{images}: header says {header_n} rows, index committed {n} (header not rewritten)"
        (rep.notes if busy else rep.problems).append(msg)
    rep.notes.append(f"{n} committed rows of {spec.row_shape} {spec.dtype}")
    return rep


def repair(directory: str | os.PathLike[str]) -> Report:
    """Run the writer's recovery (takes the lock), then verify again."""
    d = Path(directory)
    conn = index.connect(d / INDEX, readonly=True)
    try:
        spec = _spec_from_meta(index.read_meta(conn))
    finally:
        conn.close()
    try:
        DatasetWriter(d, spec).close()
    except TiffsinkError as e:
        rep = verify(d)
        rep.problems.append(f"repair failed: {e}")
        return rep
    return verify(d)
