"""Which format object serves a `[dataset]` config, and which format a folder holds.

The one place a format's name (and, for zarr, whether rows are compressed) is compared:
everything else asks the format object this returns, or a capability on it. Adding a
format is its package plus one line in `_CHOOSE` (and its name in the config's choices,
which tests/test_formats.py holds equal to `NAMES`).
"""

from __future__ import annotations

from collections.abc import Callable

from ...config import Storage
from ...errors import DatasetError
from ..layout import Layout
from .base import Format
from .npy import NPY
from .zarr_compressed import ZARR_COMPRESSED
from .zarr_slots import ZARR_SLOTS
from .zarrcommon.codec import fixed_slot_bytes


def _zarr(storage: Storage) -> Format:
    """Rows whose chunks fill a fixed slot (uncompressed ones, zstd ones padded by a
    skippable frame) are written in place; other codecs' chunks vary in size and have
    no way to fill a slot, so their shards are written whole."""
    return ZARR_SLOTS if fixed_slot_bytes(storage, 1) is not None else ZARR_COMPRESSED


# In detection order: a folder holding both is taken for the first.
_CHOOSE: dict[str, Callable[[Storage], Format]] = {
    "npy": lambda storage: NPY,
    "zarr": _zarr,
}
NAMES = tuple(_CHOOSE)


def format_of(storage: Storage) -> Format:
    """The format object for a storage config."""
    try:
        choose = _CHOOSE[storage.format]
    except KeyError:
        raise DatasetError(None, f"unknown dataset format {storage.format!r}") from None
    return choose(storage)


def detect(layout: Layout) -> Format | None:
    """The format whose rows the folder holds, by its files; None if there are none.
    (The files say the format, not its options: for zarr, either object answers.)"""
    for name in NAMES:
        found = format_of(Storage(name))
        if found.on_disk(layout):
            return found
    return None


def foreign(layout: Layout, storage: Storage) -> str | None:
    """The name of the format the folder holds, when it is not `storage`'s."""
    found = detect(layout)
    return found.name if found is not None and found.name != storage.format else None
