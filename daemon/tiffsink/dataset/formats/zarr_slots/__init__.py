"""The fixed-slot zarr format (`format = "zarr"` with `compression = "none"` or "zstd"):
every row has a fixed slot in a fixed-size shard (`shards`), written in place by the
workers (`sink`: raw, or a zstd frame padded by a skippable frame); the commit is an
fdatasync per shard touched (`store`). Reader and check are the zarr ones
(`..zarrcommon`)."""

from ..zarrcommon.format import ZarrFormat
from .store import SlotZarrStore

ZARR_SLOTS = ZarrFormat(SlotZarrStore, fixed_slots=True)

__all__ = ["ZARR_SLOTS", "SlotZarrStore"]
