"""Where a dataset's files live and how to tell that a folder is a dataset.

The one place that names the files of a dataset folder; every other module asks a
`Layout` for a path instead of joining names itself. Which format a folder holds is the
formats' to say (`formats.detect`); a layout only knows whether some rows are there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError

IMAGES = "images.npy"
ZARR = "images.zarr"
ARRAY = "0"  # the full-resolution array's path inside images.zarr
PENDING = "pending.rows"  # zarr: encoded rows not yet in a shard
TMP = "tmp"  # zarr: shards and zarr.json before their atomic rename
INDEX = "index.sqlite"
SNAPSHOT = "index.snapshot.sqlite"  # cluster datasets: the index for readers on other hosts
LOCK = "writer.lock"
PUBLISH_LOCK = "publish.lock"  # held by the one local publisher of the dataset
PUBLISH_STATE = "publish.json"  # what that publisher last did (`tiffsink status`)


@dataclass(frozen=True)
class Layout:
    """The paths of one dataset folder (nothing is touched on disk by building one)."""

    directory: Path

    @classmethod
    def of(cls, directory: str | os.PathLike[str]) -> Layout:
        return cls(Path(directory))

    @property
    def images(self) -> Path:
        return self.directory / IMAGES

    @property
    def zarr(self) -> Path:
        return self.directory / ZARR

    @property
    def pending(self) -> Path:
        return self.directory / PENDING

    @property
    def tmp(self) -> Path:
        return self.directory / TMP

    def has_rows(self) -> bool:
        """Whether the rows of some format are here (images.npy, or images.zarr's
        zarr.json, written last when the image is created)."""
        return self.images.is_file() or (self.zarr / "zarr.json").is_file()

    @property
    def index(self) -> Path:
        return self.directory / INDEX

    @property
    def snapshot(self) -> Path:
        return self.directory / SNAPSHOT

    @property
    def publish_lock(self) -> Path:
        return self.directory / PUBLISH_LOCK

    @property
    def publish_state(self) -> Path:
        return self.directory / PUBLISH_STATE

    @property
    def lock(self) -> Path:
        return self.directory / LOCK

    def missing(self) -> list[Path]:
        """The dataset files that do not exist (empty for a complete dataset)."""
        missing = [] if self.index.is_file() else [self.index]
        if not self.has_rows():
            missing.append(self.images)
        return missing

    def require_some(self) -> Layout:
        """Raise DatasetError naming the folder when it holds no dataset file at all: the
        one meaning of "not a dataset" that every command (status, verify...) shares."""
        if not self.index.is_file() and not self.has_rows():
            raise DatasetError(
                self.directory, f"not a tiffsink dataset (no {INDEX}, {IMAGES} or {ZARR})"
            )
        return self

    def require(self) -> Layout:
        """Raise DatasetError naming the folder unless the index and the rows are there;
        a folder with only some of them is called damaged, not "not a dataset"."""
        missing = self.require_some().missing()
        if missing:
            names = " and ".join(p.name for p in missing)
            raise DatasetError(
                self.directory, f"damaged dataset: {names} missing; `tiffsink verify` says more"
            )
        return self
