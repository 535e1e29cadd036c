"""The OME-Zarr documents tiffsink writes by hand are the ones zarr-python writes for the
same image, for every sample type, codec and channel count it accepts."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest

from tiffsink.config import ImageSpec, Storage
from tiffsink.dataset.formats.zarrcommon import ome
from tiffsink.dataset.formats.zarrcommon.codec import chunk_shape
from tiffsink.dataset.layout import ARRAY

DTYPES = ["uint8", "uint16", "float32"]
CODECS = ["none", "zstd", "blosc-lz4", "blosc-zstd", "gzip"]


def zarr_python_documents(spec: ImageSpec, storage: Storage) -> tuple[dict, dict]:  # type: ignore[type-arg]
    """What zarr-python 3 writes for the image: the group's and the array's zarr.json."""
    import zarr
    from zarr.codecs import BloscCodec, BloscShuffle, GzipCodec, ZstdCodec

    level = storage.compression_level
    compressors = {
        "none": None,
        "zstd": [ZstdCodec(level=level)],
        "blosc-lz4": [BloscCodec(cname="lz4", clevel=level, shuffle=BloscShuffle.shuffle)],
        "blosc-zstd": [BloscCodec(cname="zstd", clevel=level, shuffle=BloscShuffle.shuffle)],
        "gzip": [GzipCodec(level=level)],
    }[storage.compression]
    chunk = chunk_shape(spec.row_shape)
    with tempfile.TemporaryDirectory() as tmp:
        group = zarr.create_group(tmp, zarr_format=3, attributes=ome.ome_attributes(spec))
        group.create_array(
            ARRAY,
            shape=(0, *chunk),
            dtype=spec.dtype,
            chunks=(1, *chunk),
            shards=(storage.shard_rows, *chunk),
            compressors=compressors,
            fill_value=0,
            dimension_names=[a["name"] for a in ome.axes(spec)],
        )
        return (
            json.loads((Path(tmp) / "zarr.json").read_bytes()),
            json.loads((Path(tmp) / ARRAY / "zarr.json").read_bytes()),
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("channels", [1, 3])
def test_documents_equal_zarr_pythons(dtype: str, codec: str, channels: int) -> None:
    """The group and array documents equal zarr-python's for the same image."""
    spec = ImageSpec(height=6, width=10, dtype=dtype, channels=channels)
    storage = Storage("zarr", 16, codec, 3)
    group, array = zarr_python_documents(spec, storage)
    assert ome.group_document(spec) == group
    assert ome.array_template(spec, storage) == array


def test_creating_and_opening_a_zarr_dataset_imports_no_zarr_python(tmp_path: Path) -> None:
    """A writer creates and reopens a zarr dataset without importing zarr-python."""
    import subprocess

    code = (
        "import sys\n"
        "from tiffsink.config import ImageSpec, Storage\n"
        "from tiffsink.dataset import DatasetWriter\n"
        "spec, st = ImageSpec(height=4, width=4), Storage('zarr', 8, 'zstd', 1)\n"
        f"DatasetWriter({str(tmp_path / 'ds')!r}, spec, st).close()\n"
        f"DatasetWriter({str(tmp_path / 'ds')!r}, spec, st).close()\n"
        "print('zarr' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_reading_a_zarr_dataset_imports_no_zarr_python_until_images_is_asked_for(
    tmp_path: Path,
) -> None:
    """open_dataset, len, read, take and full shards need no zarr-python; `images` (the
    zarr-python array) imports it when first asked for."""
    import subprocess

    code = (
        "import sys, numpy as np\n"
        "from tiffsink import open_dataset\n"
        "from tiffsink.config import ImageSpec, Storage\n"
        "from tiffsink.dataset import DatasetWriter\n"
        "from tiffsink.dataset.records import RowRecord\n"
        "spec, st = ImageSpec(height=4, width=4), Storage('zarr', 2, 'zstd', 1)\n"
        f"w = DatasetWriter({str(tmp_path / 'ds')!r}, spec, st)\n"
        "recs = [RowRecord(w.write_row(np.full((4, 4), i, np.uint16)), f'/f{i}', 0, 1, i,\n"
        "        'h', 4, 4, 'uint16', 1, 0.0) for i in range(3)]\n"
        "w.commit(recs, []); w.close()\n"
        f"ds = open_dataset({str(tmp_path / 'ds')!r})\n"
        "ok = len(ds) == 3 and ds.read(0, 3)[:, 0, 0].tolist() == [0, 1, 2]\n"
        "ok = ok and ds.take([2, 0])[:, 0, 0].tolist() == [2, 0] and bool(ds.full_shard(0, 2))\n"
        "before = 'zarr' in sys.modules\n"
        "shape = ds.images.shape\n"
        "print(ok, before, 'zarr' in sys.modules, shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True False True (3, 4, 4)"


@pytest.mark.parametrize("codec", CODECS)
def test_the_memory_estimate_knows_which_codecs_rewrite_shards(codec: str) -> None:
    """The config's memory estimate holds a shard for exactly the codecs whose chunks
    cannot fill a fixed slot (the format that rewrites its last shard whole)."""
    from tiffsink.dataset.formats.zarrcommon.codec import fixed_slot_bytes

    storage = Storage("zarr", 64, codec, 1)
    assert storage.rewrites_shards == (fixed_slot_bytes(storage, 1) is None)
    assert not Storage("npy").rewrites_shards


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("rows", [0, 7, 10**12])
def test_raising_the_shape_writes_the_document_with_only_the_row_count_changed(
    codec: str, rows: int
) -> None:
    """The rendered zarr.json for any row count is the full document re-serialized with
    that count: nothing else in it differs."""
    from tiffsink.dataset.formats.zarrcommon.array import ShapeDocument

    spec = ImageSpec(height=6, width=10, dtype="uint16", channels=3)
    meta = ome.array_template(spec, Storage("zarr", 16, codec, 3))
    rendered = ShapeDocument(meta).render(rows)
    meta["shape"][0] = rows
    assert rendered == json.dumps(meta, indent=2).encode()
    assert json.loads(rendered) == meta
