"""The uncompressed zarr format (`format = "zarr"`, `compression = "none"`): every row has
a fixed slot in a fixed-size shard (`shards`), written in place by the workers (`sink`);
the commit is an fdatasync per shard touched (`store`). Reader and check are the zarr
ones (`..zarrcommon`)."""

from ..zarrcommon.format import ZarrFormat
from .store import UncompressedZarrStore

ZARR_UNCOMPRESSED = ZarrFormat(UncompressedZarrStore, fixed_slots=True)

__all__ = ["ZARR_UNCOMPRESSED", "UncompressedZarrStore"]
