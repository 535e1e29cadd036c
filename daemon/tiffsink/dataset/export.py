"""`tiffsink export`: copy a dataset into another format, index included, resumably.

The copy is an ordinary writer of the new dataset, so it keeps the commit protocol: rows
are committed a shard's worth at a time through the new index, and a copy killed at any
point resumes from its committed rows. Before resuming, the rows already copied are
checked to be the source's (same file version and page per row); after copying, every
row is compared with the source, pixel for pixel.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..config import ImageSpec, Storage
from ..errors import DatasetError, SpecMismatchError
from . import index
from .meta import spec_from_meta
from .reader import Dataset
from .records import GrownRecord, RowRecord
from .writer import DatasetWriter


@dataclass
class ExportResult:
    rows: int  # rows in the copy
    copied: int  # rows copied by this run (the rest were there from an earlier run)
    failures: int  # failure records carried over


def _same(a: RowRecord, b: RowRecord) -> bool:
    """The same row of the same file version (the copy's ingest time is the source's)."""
    return replace(a, ingested_at=0.0) == replace(b, ingested_at=0.0)


def export(
    src_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    storage: Storage,
    progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Copy every committed row of `src_dir` (as of now) into `out_dir` in `storage`."""
    with Dataset(src_dir) as src:
        spec = spec_from_meta(src.info)
        n = index.committed_rows(src.conn)
        if len(src) < n:  # a zarr source's shape may lag its index by one batch
            n = len(src)
        step = max(storage.shard_rows, 64)
        with _open_copy(out_dir, spec, storage, src.directory) as w:
            done = w.committed
            if done > n:
                raise DatasetError(w.directory, f"holds {done} rows, the source only {n}")
            _check_prefix(src, w, done)
            start = done
            while done < n:
                stop = min(n, done + step)
                recs = index.row_records(src.conn, done, stop)
                for row in src.read(done, stop):
                    w.write_row(np.ascontiguousarray(row))
                w.commit(recs, [])
                done = stop
                if progress is not None:
                    progress(done, n)
            fails = src.failures()
            grown = index.grown_versions(src.conn) if _has_grown(src) else []
            w.commit([], fails, [g for g in grown if not w.lookup.known([_version(g)])])
        _compare(src, out_dir, n)
        return ExportResult(n, n - start, len(fails))


# How export's own flags name the storage keys that the config calls dataset.*.
_FLAGS = {
    "dataset.format": "--format",
    "dataset.shard_rows": "--shard-rows",
    "dataset.compression": "--compression",
    "dataset.compression_level": "--level",
}


def _open_copy(
    out_dir: str | os.PathLike[str], spec: ImageSpec, storage: Storage, src: Path
) -> DatasetWriter:
    """The copy's writer; a folder holding another dataset is refused in export's own
    terms (its flags, the source's spec), leaving out keys neither side sets."""
    try:
        return DatasetWriter(out_dir, spec, storage)
    except SpecMismatchError as e:
        parts = []
        for key, (have, want) in e.diffs.items():
            if key in _FLAGS:
                if have is not None and want is not None:
                    parts.append(f"{_FLAGS[key]}: it has {have!r}, this export asks for {want!r}")
            else:
                parts.append(f"{key}: it has {have!r}, the source {src} has {want!r}")
        raise DatasetError(
            out_dir,
            "already holds a different dataset, refusing to mix rows: "
            + "; ".join(parts)
            + "; export into a new folder",
        ) from None


def _has_grown(src: Dataset) -> bool:
    """Whether the source's index has grown versions (older indexes have no table)."""
    q = "SELECT 1 FROM sqlite_master WHERE name = 'grown_versions'"
    return src.conn.execute(q).fetchone() is not None


def _version(g: GrownRecord) -> tuple[str, int, int]:
    return (g.source, g.size, g.mtime_ns)


def _check_prefix(src: Dataset, w: DatasetWriter, done: int) -> None:
    """Rows an earlier run copied must be the source's first rows, record for record."""
    if not done:
        return
    ours = index.row_records(w.conn, 0, done)
    theirs = index.row_records(src.conn, 0, done)
    for a, b in zip(ours, theirs, strict=True):
        if not _same(a, b):
            raise DatasetError(
                w.directory,
                f"row {a.row} is {a.source} page {a.page}, the source's is {b.source} page "
                f"{b.page}: not a copy of this source; refusing to resume",
            )


def _compare(src: Dataset, out_dir: str | os.PathLike[str], n: int) -> None:
    """Every row and record of the copy equals the source's; DatasetError names the first
    that does not."""
    with Dataset(out_dir) as out:
        if len(out) != n:
            raise DatasetError(out.directory, f"copy holds {len(out)} rows, expected {n}")
        for start in range(0, n, 256):
            stop = min(n, start + 256)
            a, b = src.read(start, stop), out.read(start, stop)
            if not np.array_equal(a, b):
                bad = start + int(np.nonzero((a != b).reshape(stop - start, -1).any(1))[0][0])
                raise DatasetError(out.directory, f"row {bad} differs from the source's")
            for x, y in zip(
                index.row_records(src.conn, start, stop),
                index.row_records(out.conn, start, stop),
                strict=True,
            ):
                if not _same(x, y):
                    raise DatasetError(out.directory, f"index record of row {x.row} differs")
