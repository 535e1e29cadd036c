"""Where a dataset's files live and how to tell that a folder is a dataset.

The one place that names the files of a dataset folder; every other module asks a
`Layout` for a path instead of joining names itself, so a second format (or a renamed
file) changes this module only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError

IMAGES = "images.npy"
INDEX = "index.sqlite"
LOCK = "writer.lock"


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
    def index(self) -> Path:
        return self.directory / INDEX

    @property
    def lock(self) -> Path:
        return self.directory / LOCK

    def missing(self) -> list[Path]:
        """The dataset files that do not exist (empty for a complete dataset)."""
        return [p for p in (self.images, self.index) if not p.is_file()]

    def require(self) -> Layout:
        """Raise DatasetError naming the folder unless both dataset files are there."""
        if self.missing():
            raise DatasetError(self.directory, f"not a tiffsink dataset (no {INDEX} / {IMAGES})")
        return self
