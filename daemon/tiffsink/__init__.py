"""tiffsink: every TIFF that lands in a folder, once, in one growing memory-mappable array."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dataset import Collection, Dataset, open_collection, open_dataset

__all__ = ["Collection", "Dataset", "__version__", "open_collection", "open_dataset"]

_READERS = ("Collection", "Dataset", "open_collection", "open_dataset")


def __getattr__(name: str) -> Any:
    """The reader API and `__version__`, imported on first use: a worker process imports
    `tiffsink.pipeline.worker`, and every module it does not need delays its start."""
    if name in _READERS:
        from . import dataset

        found: Any = getattr(dataset, name)
    elif name == "__version__":
        from .version import version

        found = version()
    else:
        raise AttributeError(f"module 'tiffsink' has no attribute {name!r}")
    globals()[name] = found
    return found
