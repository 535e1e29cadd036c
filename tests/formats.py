"""Per-format probes for the conformance suite: what a plain reader of each format sees.

The suite (test_conformance.py) runs the same specification against every storage
backend; only these few functions know how a format looks on disk.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import zarr

from tiffsink.config import ImageSpec, Storage
from tiffsink.dataset import header as npyhead
from tiffsink.dataset.formats.dense import DenseShards
from tiffsink.dataset.formats.sink import RowSink
from tiffsink.dataset.layout import Layout
from tiffsink.dataset.writer import DatasetWriter

NPY = Storage()
ZARR = Storage("zarr", shard_rows=3, compression="none")  # small shards: many boundaries
ZARR_ZSTD = Storage("zarr", shard_rows=4, compression="zstd", compression_level=3)
STORAGES = {"npy": NPY, "zarr": ZARR, "zarr-zstd": ZARR_ZSTD}


def raw_rows(directory: Path, storage: Storage) -> np.ndarray:
    """The rows a reader that knows nothing of tiffsink sees (np.load / zarr-python),
    in the dataset's row layout (H, W[, C])."""
    lay = Layout.of(directory)
    if storage.format == "npy":
        return np.array(np.load(lay.images, mmap_mode="r"))
    arr = zarr.open_array(lay.zarr / "0", mode="r")
    data = np.asarray(arr[:])
    return data.transpose(0, 2, 3, 1) if data.ndim == 4 else data


def leftover(directory: Path, spec: ImageSpec, storage: Storage, n: int) -> list[str]:
    """Anything on disk past the `n` committed rows (empty after recovery or close)."""
    lay = Layout.of(directory)
    if storage.format == "npy":
        extra = lay.images.stat().st_size - (npyhead.HEADER_BYTES + n * spec.row_bytes)
        return [f"{extra} bytes"] if extra else []
    out = []
    if lay.pending.exists() and lay.pending.stat().st_size:
        out.append(f"pending.rows holds {lay.pending.stat().st_size} bytes")
    out += [f"tmp/{e}" for e in os.listdir(lay.tmp)]
    if storage.compression == "none" and n % storage.shard_rows:
        ndim = 1 + len(spec.row_shape)
        shards = DenseShards(lay.zarr / "0", storage.shard_rows, spec.row_bytes, ndim)
        s, k = divmod(n, storage.shard_rows)
        if shards.is_dense(s) and shards.data_after(s, k):
            out.append(f"shard {s} holds bytes past its {k} committed rows")
    cdir = lay.zarr / "0" / "c"
    last = (n - 1) // storage.shard_rows if n else -1
    if cdir.is_dir():
        out += [f"shard {e}" for e in os.listdir(cdir) if int(e) > last]
    return out


def tear(w: DatasetWriter, nbytes: int) -> None:
    """A worker killed mid-write: a prefix of garbage in the next pending slot, written
    the way a worker writes."""
    nbytes = min(nbytes, w.store.slot_bytes - 1)
    sink = RowSink(w.store.sink())
    try:
        sink.write(w.offset(w.cursor), memoryview(b"\xab" * nbytes))
    finally:
        sink.close()


def tear_publish(w: DatasetWriter, n: int, cut: int) -> None:
    """The published count's rewrite interrupted: npy's field partly written in place;
    zarr's new zarr.json only partly written to tmp/ (never renamed)."""
    if w.storage.format == "npy":
        field = npyhead.count_field(n)[:cut]
        off = npyhead.count_offset(w.spec.row_shape, w.spec.dtype)
        os.pwrite(w.store.pending_fd, field, off)
    else:
        doc = (w.layout.zarr / "0" / "zarr.json").read_bytes()
        (w.layout.tmp / "zarr.json.1.tmp").write_bytes(doc[: cut * 7])
