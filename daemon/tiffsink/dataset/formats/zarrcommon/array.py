"""What both zarr formats keep of `images.zarr/0`: its zarr.json, tmp/, and the shard
folders past the committed rows.

The image group is created once (in tmp/, then renamed into place) and must match the
spec; tiffsink then only ever rewrites the array's shape, raised after each index commit
(written to tmp/ and renamed; not fsynced: the index is the truth, and recovery raises a
lagging shape or rebuilds a zarr.json a power cut left empty; a full disk leaves it
lagging until a later commit raises it).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import structlog

from ....config import ImageSpec, Storage
from ....errors import DatasetError, DatasetFullError
from ...fsio import fsync_dir, write_atomic
from ...layout import ARRAY, Layout
from . import codec, ome, shard
from .wholeshard import ShardWriter

log = structlog.get_logger("tiffsink")


class ZarrArray:
    """The array folder of one zarr dataset, on the writer's side."""

    def __init__(self, layout: Layout, spec: ImageSpec, storage: Storage) -> None:
        self.layout, self.storage = layout, storage
        self.path = layout.zarr / ARRAY
        self.S = storage.shard_rows
        self.ndim = 1 + len(codec.chunk_shape(spec.row_shape))
        layout.tmp.mkdir(exist_ok=True)
        if not (self.path / "zarr.json").is_file():
            ome.create_in_place(layout, spec, storage)
        self.meta: dict[str, Any] = ome.load_array_meta(self.path, spec, storage, rebuild_torn=True)
        self._document = ShapeDocument(self.meta)

    def shard_writer(self, slot_bytes: int = 0) -> ShardWriter:
        """Whole-shard writes into this array (`slot_bytes` > 0: fixed slots)."""
        return ShardWriter(self.path, self.layout.tmp, self.S, self.ndim, self.storage, slot_bytes)

    def shard_path(self, s: int) -> Path:
        return shard.path(self.path, s, self.ndim)

    def watched(self) -> tuple[list[Path], list[Path]]:
        """The folders whose replacement loses the dataset (their files are replaced by
        renames all the time, so the folders are what identity.py checks)."""
        return [], [self.layout.zarr, self.path]

    def claimed_rows(self) -> int:
        return int(self.meta["shape"][0])

    def cut_beyond(self, n: int) -> int:
        """Empty tmp/, refuse a shape past the index, delete shards past the committed
        rows; returns the shape zarr.json claims."""
        for stale in self.layout.tmp.iterdir():
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink()
        claimed = self.claimed_rows()
        if claimed > n:
            raise DatasetError(
                self.path / "zarr.json",
                f"shape claims {claimed} rows but the index committed {n}",
            )
        self.delete_shards_after((n - 1) // self.S if n else -1)
        return claimed

    def shards_after(self, last: int) -> list[str]:
        """The entries of c/ past shard `last` (anything not a shard number too)."""
        try:
            return [e for e in os.listdir(self.path / "c") if not e.isdigit() or int(e) > last]
        except FileNotFoundError:
            return []

    def delete_shards_after(self, last: int) -> None:
        beyond = self.shards_after(last)
        for e in beyond:
            shutil.rmtree(self.path / "c" / e, ignore_errors=True)
        if beyond:
            fsync_dir(self.path / "c")

    def publish_shape(self, n: int) -> None:
        """Raise zarr.json's shape to `n` rows: renamed, so readers see the old shape or
        the new one. On a full disk the shape stays where it was: the rows are committed
        (the index says so), readers see them once a later commit, or recovery, raises
        it; meanwhile the workers' next writes meet the full disk and pause intake."""
        before = self.meta["shape"][0]
        self.meta["shape"][0] = n
        data = self._document.render(n)
        try:
            write_atomic(self.layout.tmp, self.path / "zarr.json", data, durable=False)
        except DatasetFullError as e:
            self.meta["shape"][0] = before
            log.warning("dataset.shape_lagging", rows=n, shape=before, detail=e.reason)


class ShapeDocument:
    """zarr.json as bytes for any row count: rendered once, then only the number changes
    (json.dumps of the whole document was a fifth of a small commit's CPU)."""

    MARK = "__tiffsink_rows__"

    def __init__(self, meta: dict[str, Any]) -> None:
        doc = json.loads(json.dumps(meta))
        doc["shape"][0] = self.MARK
        head, tail = json.dumps(doc, indent=2).split(json.dumps(self.MARK))
        self.head, self.tail = head.encode(), tail.encode()

    def render(self, rows: int) -> bytes:
        """The document with `rows` rows: as `json.dumps(meta, indent=2)` would write it."""
        return b"%s%d%s" % (self.head, rows, self.tail)
