"""The OME-Zarr 0.5 image group a zarr dataset is: its zarr.json documents, made once.

`images.zarr/` is an NGFF image whose only (full-resolution) array is `0`: axes `row`
(one image per row; a custom axis), then `c` for RGB rows, then `y`, `x` in pixels (the
sources' pixel size is not known, so the scale is 1). The documents are built here as
zarr-python 3 writes them for the same array (tests/test_zarr_documents.py compares them
with its output), without importing it: a quarter of a second that every command opening
a zarr dataset paid. tiffsink then only ever rewrites the array's shape.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import structlog

from ....config import ImageSpec, Storage
from ....errors import DatasetError
from ...fsio import fsync_dir
from ...layout import ARRAY, Layout
from .codec import chunk_shape

log = structlog.get_logger("tiffsink")


def axes(spec: ImageSpec) -> list[dict[str, str]]:
    out = [{"name": "row", "type": "row"}]
    if spec.channels > 1:
        out.append({"name": "c", "type": "channel"})
    out += [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    return out


def ome_attributes(spec: ImageSpec) -> dict[str, Any]:
    ax = axes(spec)
    return {
        "ome": {
            "version": "0.5",
            "multiscales": [
                {
                    "name": "tiffsink",
                    "axes": ax,
                    "datasets": [
                        {
                            "path": ARRAY,
                            "coordinateTransformations": [
                                {"type": "scale", "scale": [1.0] * len(ax)}
                            ],
                        }
                    ],
                }
            ],
        }
    }


def _codecs(spec: ImageSpec, storage: Storage) -> list[dict[str, Any]]:
    """The inner chunks' codecs: bytes (little-endian where a sample has several bytes),
    then the compressor."""
    size = {"uint8": 1, "uint16": 2, "float32": 4}[spec.dtype]
    out: list[dict[str, Any]] = [
        {"name": "bytes"} if size == 1 else {"name": "bytes", "configuration": {"endian": "little"}}
    ]
    level = storage.compression_level
    match storage.compression:
        case "zstd":
            out.append({"name": "zstd", "configuration": {"level": level, "checksum": False}})
        case "blosc-lz4" | "blosc-zstd":
            cname = storage.compression.removeprefix("blosc-")
            blosc = {"typesize": size, "cname": cname, "clevel": level, "shuffle": "shuffle"}
            out.append({"name": "blosc", "configuration": {**blosc, "blocksize": 0}})
        case "gzip":
            out.append({"name": "gzip", "configuration": {"level": level}})
    return out


def group_document(spec: ImageSpec) -> dict[str, Any]:
    """The image group's zarr.json."""
    return {"attributes": ome_attributes(spec), "zarr_format": 3, "node_type": "group"}


def array_template(spec: ImageSpec, storage: Storage) -> dict[str, Any]:
    """The array's zarr.json as a dict for 0 rows: what an existing one must match."""
    chunk = list(chunk_shape(spec.row_shape))
    little = {"name": "bytes", "configuration": {"endian": "little"}}
    sharding = {
        "chunk_shape": [1, *chunk],
        "codecs": _codecs(spec, storage),
        "index_codecs": [little, {"name": "crc32c"}],
        "index_location": "end",
    }
    return {
        "shape": [0, *chunk],
        "data_type": spec.dtype,
        "chunk_grid": {
            "name": "regular",
            "configuration": {"chunk_shape": [storage.shard_rows, *chunk]},
        },
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0.0 if spec.dtype.startswith("float") else 0,
        "codecs": [{"name": "sharding_indexed", "configuration": sharding}],
        "attributes": {},
        "dimension_names": [a["name"] for a in axes(spec)],
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def create(path: Path, spec: ImageSpec, storage: Storage) -> None:
    """Write an empty image group at `path` (the caller renames it into place)."""
    (path / ARRAY).mkdir(parents=True, exist_ok=True)
    (path / "zarr.json").write_text(json.dumps(group_document(spec), indent=2))
    (path / ARRAY / "zarr.json").write_text(json.dumps(array_template(spec, storage), indent=2))


def same_layout(doc: dict[str, Any], template: dict[str, Any]) -> list[str]:
    """The top-level keys (shape's row count aside) in which `doc` differs from ours."""
    diffs = [k for k in template if k != "shape" and doc.get(k) != template[k]]
    if list(doc.get("shape", []))[1:] != list(template["shape"])[1:]:
        diffs.append("shape")
    return diffs


def create_in_place(layout: Layout, spec: ImageSpec, storage: Storage) -> None:
    """Build the empty image group in tmp/, fsync it, and rename it into place."""
    if layout.zarr.exists():
        raise DatasetError(layout.zarr / ARRAY / "zarr.json", "missing: not a tiffsink image")
    staging = layout.tmp / layout.zarr.name
    shutil.rmtree(staging, ignore_errors=True)
    try:
        create(staging, spec, storage)
        for d, _, files in os.walk(staging):
            for f in files:
                fd = os.open(Path(d) / f, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            fsync_dir(Path(d))
        os.replace(staging, layout.zarr)
        fsync_dir(layout.directory)
    except OSError as e:
        raise DatasetError(layout.zarr, f"cannot create the zarr image: {e}") from e


def load_array_meta(
    array: Path, spec: ImageSpec, storage: Storage, rebuild_torn: bool = False
) -> dict[str, Any]:
    """The array's zarr.json, refused (naming the keys) unless it is the one we would make.

    With `rebuild_torn` (the writer, which raises the shape to the index's count next), a
    zarr.json that is not JSON is rebuilt with 0 rows: its shape rewrites are not fsynced
    (it must equal the template anyway, and the shape is the index's count), so after a
    power cut it may be empty.
    """
    where = array / "zarr.json"
    template = array_template(spec, storage)
    try:
        doc: dict[str, Any] = json.loads(where.read_bytes())
    except ValueError as e:
        if not rebuild_torn:
            raise DatasetError(where, f"unreadable: {e}") from e
        log.warning("dataset.zarr_json_rebuilt", path=str(where), detail=str(e))
        return template
    except OSError as e:
        raise DatasetError(where, f"unreadable: {e}") from e
    diffs = same_layout(doc, template)
    if diffs:
        raise DatasetError(where, f"differs from the dataset's spec in {', '.join(diffs)}")
    return doc
