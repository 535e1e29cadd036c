"""Storage formats: one package per format, each holding every side of it.

`npy/` (images.npy), `zarr_slots/` (rows in place in fixed-layout shards: uncompressed
or zstd) and `zarr_compressed/` (whole shards: the other codecs) each give a `Format`
object (`base.py`) whose store is the writer's side (`store.py`'s `RowStore`), whose
sink is the workers' (`sink.py`), plus its reader and its check. `zarrcommon/` is what
the zarr formats share, by composition. `registry.py` picks the object for a config:
the only place format names are compared. This module is the formats' public interface.
"""

from .base import Format, RowReader
from .registry import NAMES, detect, foreign, format_of
from .sink import RowSink, SinkSpec, as_page
from .store import RowStore
from .zarrcommon.wholeshard import ShardWriter

__all__ = [
    "NAMES",
    "Format",
    "RowReader",
    "RowSink",
    "RowStore",
    "ShardWriter",
    "SinkSpec",
    "as_page",
    "detect",
    "foreign",
    "format_of",
]
