"""tiffsink: every TIFF that lands in a folder, once, in one growing memory-mappable array."""

from __future__ import annotations

from .dataset import Collection, Dataset, open_collection, open_dataset

__all__ = ["Collection", "Dataset", "__version__", "open_collection", "open_dataset"]


def __getattr__(name: str) -> str:
    """`__version__`, read on first use: importing importlib.metadata costs about 50 ms,
    which every worker process would pay at spawn."""
    if name != "__version__":
        raise AttributeError(f"module 'tiffsink' has no attribute {name!r}")
    from .version import version

    found = version()
    globals()["__version__"] = found
    return found
