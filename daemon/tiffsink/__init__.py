"""tiffsink: every TIFF that lands in a folder, once, in one growing memory-mappable array."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tiffsink")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+src"

from .dataset import Dataset, open_dataset

__all__ = ["Dataset", "__version__", "open_dataset"]
