"""`tiffsink verify`: check that the index and the rows tell the same story.

The index side is checked here; the rows' side by their format (`Format.check`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..config import ImageSpec, Storage
from ..errors import DatasetLockedError, TiffsinkError
from . import index, lock
from .formats import format_of
from .layout import Layout
from .meta import spec_from_meta, storage_from_meta
from .writer import DatasetWriter


@dataclass
class Report:
    """Problems make verify fail; notes are facts (a commit in progress, the row count)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_index(lay: Layout, rep: Report) -> tuple[int, ImageSpec, Storage]:
    """Index-side checks; returns (committed rows, the stored spec and storage)."""
    conn = index.connect(lay.index, readonly=True)
    try:
        check = index.quick_check(conn)
        if check != "ok":
            rep.problems.append(f"{lay.index}: quick_check: {check}")
        meta = index.read_meta(conn)
        spec, storage = spec_from_meta(meta), storage_from_meta(meta)
        problem = index.continuity_problem(conn)
        if problem is not None:
            rep.problems.append(f"{lay.index}: {problem}")
        for s, size, mt, page, c in index.duplicate_versions(conn):
            rep.problems.append(f"{s} (size {size}, mtime_ns {mt}, page {page}): {c} rows")
        return index.committed_rows(conn), spec, storage
    finally:
        conn.close()


def verify(directory: str | os.PathLike[str]) -> Report:
    """Every inconsistency as one line; a lagging header or uncommitted tail is a note
    when a writer holds the dataset (that is a commit in progress), a problem otherwise."""
    lay = Layout.of(directory).require_some()
    rep = Report([f"{p}: missing" for p in lay.missing()])
    if not rep.ok:
        return rep
    n, spec, storage = _check_index(lay, rep)
    busy = lock.holder(lay) is not None
    problems, notes = format_of(storage).check(lay, spec, storage, n, busy)
    rep.problems += problems
    rep.notes += notes
    rep.notes.append(f"{n} committed rows of {spec.row_shape} {spec.dtype} ({storage.format})")
    return rep


def repair(directory: str | os.PathLike[str]) -> Report:
    """Run the writer's recovery (takes the lock), then verify again. DatasetLockedError
    when a writer holds the dataset: that is no damage, and verify works meanwhile."""
    lay = Layout.of(directory).require_some()
    pid = lock.holder(lay)
    if pid is not None:
        raise DatasetLockedError(lay.directory, None if pid < 0 else pid)
    if lay.missing():
        return verify(lay.directory)  # no index to recover from: report what is missing
    conn = index.connect(lay.index, readonly=True)
    try:
        meta = index.read_meta(conn)
    finally:
        conn.close()
    try:
        DatasetWriter(lay.directory, spec_from_meta(meta), storage_from_meta(meta)).close()
    except DatasetLockedError:
        raise  # taken between the check above and the open: still not damage
    except TiffsinkError as e:
        rep = verify(lay.directory)
        rep.problems.append(f"repair failed: {e}")
        return rep
    return verify(lay.directory)
