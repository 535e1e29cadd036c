"""The compressed zarr format (`format = "zarr"` with a codec): workers encode rows into
slots of `pending.rows` (`sink`, `pending`); the commit writes whole shards through the
zarr formats' one whole-shard path (`store`). Reader and check are the zarr ones
(`..zarrcommon`)."""

from ..zarrcommon.format import ZarrFormat
from .store import CompressedZarrStore

ZARR_COMPRESSED = ZarrFormat(CompressedZarrStore, fixed_slots=False)

__all__ = ["ZARR_COMPRESSED", "CompressedZarrStore"]
