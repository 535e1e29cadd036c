"""Per-format probes for the conformance suite: what a plain reader of each format sees.

The suite (test_conformance.py) runs the same specification against every storage
format; only the probe classes here know how a format looks on disk, one per format
object (picked by the registry, never by comparing names).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import zarr

from tiffsink.config import ImageSpec, Storage
from tiffsink.dataset.formats import Format, format_of
from tiffsink.dataset.formats.npy import NPY as NPY_FORMAT
from tiffsink.dataset.formats.npy import header as npyhead
from tiffsink.dataset.formats.zarr_compressed import ZARR_COMPRESSED
from tiffsink.dataset.formats.zarr_slots import ZARR_SLOTS
from tiffsink.dataset.formats.zarr_slots.shards import DenseShards
from tiffsink.dataset.formats.zarrcommon.codec import fixed_slot_bytes
from tiffsink.dataset.layout import Layout
from tiffsink.dataset.writer import DatasetWriter

NPY = Storage()
ZARR = Storage("zarr", shard_rows=3, compression="none")  # small shards: many boundaries
ZARR_ZSTD = Storage("zarr", shard_rows=4, compression="zstd", compression_level=3)
ZARR_BLOSC = Storage("zarr", shard_rows=4, compression="blosc-lz4", compression_level=3)
STORAGES = {"npy": NPY, "zarr": ZARR, "zarr-zstd": ZARR_ZSTD, "zarr-blosc": ZARR_BLOSC}


class NpyProbe:
    """images.npy, through np.load and its header bytes."""

    def raw_rows(self, lay: Layout) -> np.ndarray:
        return np.array(np.load(lay.images, mmap_mode="r"))

    def leftover(self, lay: Layout, spec: ImageSpec, storage: Storage, n: int) -> list[str]:
        extra = lay.images.stat().st_size - (npyhead.HEADER_BYTES + n * spec.row_bytes)
        return [f"{extra} bytes"] if extra else []

    def tear_publish(self, w: DatasetWriter, n: int, cut: int) -> None:
        """The header's count field partly rewritten in place."""
        field = npyhead.count_field(n)[:cut]
        off = npyhead.count_offset(w.spec.row_shape, w.spec.dtype)
        os.pwrite(w.store.pending_fd, field, off)


class ZarrProbe:
    """images.zarr, through zarr-python and a listing of its folders."""

    def raw_rows(self, lay: Layout) -> np.ndarray:
        arr = zarr.open_array(lay.zarr / "0", mode="r")
        data = np.asarray(arr[:])
        return data.transpose(0, 2, 3, 1) if data.ndim == 4 else data

    def leftover(self, lay: Layout, spec: ImageSpec, storage: Storage, n: int) -> list[str]:
        out = []
        if lay.pending.exists() and lay.pending.stat().st_size:
            out.append(f"pending.rows holds {lay.pending.stat().st_size} bytes")
        out += [f"tmp/{e}" for e in os.listdir(lay.tmp)]
        out += self.slots_past(lay, spec, storage, n)
        cdir = lay.zarr / "0" / "c"
        last = (n - 1) // storage.shard_rows if n else -1
        if cdir.is_dir():
            out += [f"shard {e}" for e in os.listdir(cdir) if int(e) > last]
        return out

    def slots_past(self, lay: Layout, spec: ImageSpec, storage: Storage, n: int) -> list[str]:
        """Bytes in the last shard past its committed rows (only where rows have slots)."""
        return []

    def tear_publish(self, w: DatasetWriter, n: int, cut: int) -> None:
        """The new zarr.json only partly written to tmp/ (never renamed)."""
        doc = (w.layout.zarr / "0" / "zarr.json").read_bytes()
        (w.layout.tmp / "zarr.json.1.tmp").write_bytes(doc[: cut * 7])


class SlotZarrProbe(ZarrProbe):
    def slots_past(self, lay: Layout, spec: ImageSpec, storage: Storage, n: int) -> list[str]:
        slot = fixed_slot_bytes(storage, spec.row_bytes)
        if not n % storage.shard_rows or slot is None:
            return []
        ndim = 1 + len(spec.row_shape)
        shards = DenseShards(lay.zarr / "0", storage.shard_rows, slot, ndim)
        s, k = divmod(n, storage.shard_rows)
        if shards.is_dense(s) and shards.data_after(s, k):
            return [f"shard {s} holds bytes past its {k} committed rows"]
        return []


PROBES: dict[Format, NpyProbe | ZarrProbe] = {
    NPY_FORMAT: NpyProbe(),
    ZARR_SLOTS: SlotZarrProbe(),
    ZARR_COMPRESSED: ZarrProbe(),
}


def raw_rows(directory: Path, storage: Storage) -> np.ndarray:
    """The rows a reader that knows nothing of tiffsink sees (np.load / zarr-python),
    in the dataset's row layout (H, W[, C])."""
    return PROBES[format_of(storage)].raw_rows(Layout.of(directory))


def leftover(directory: Path, spec: ImageSpec, storage: Storage, n: int) -> list[str]:
    """Anything on disk past the `n` committed rows (empty after recovery or close)."""
    return PROBES[format_of(storage)].leftover(Layout.of(directory), spec, storage, n)


def tear(w: DatasetWriter, nbytes: int) -> None:
    """A worker killed mid-write: a prefix of garbage in the next pending slot, written
    the way a worker writes."""
    nbytes = min(nbytes, w.store.slot_bytes - 1)
    sink = w.store.sink().open()
    try:
        sink.write(w.offset(w.cursor), memoryview(b"\xab" * nbytes))
    finally:
        sink.close()


def tear_publish(w: DatasetWriter, n: int, cut: int) -> None:
    """The published count's rewrite interrupted: npy's field partly written in place;
    zarr's new zarr.json only partly written to tmp/ (never renamed)."""
    PROBES[format_of(w.storage)].tear_publish(w, n, cut)
