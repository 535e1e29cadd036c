"""The dataset stage: where committed rows live, and the only code that touches its files.

`writer` appends and commits (the commit point is the index transaction), `reader` maps
committed rows while a writer appends, `verify` and `status` inspect, `lookup` answers
exactly-once checks. `layout` names the files, `lock` guards the single writer, `index`
holds every SQL statement, `meta` the image spec a dataset was created with, `fsio` the
durable file calls. Each storage format is one package under `formats/`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .collection import Collection, open_collection
    from .opener import open_dataset
    from .reader import Dataset
    from .writer import DatasetWriter

__all__ = ["Collection", "Dataset", "DatasetWriter", "open_collection", "open_dataset"]

# Imported on first use: a worker needs only `formats`, not the readers and the writer.
_WHERE = {
    "Collection": "collection",
    "open_collection": "collection",
    "open_dataset": "opener",
    "Dataset": "reader",
    "DatasetWriter": "writer",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    found = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = found
    return found
