"""The OME-Zarr 0.5 image group a zarr dataset is: its zarr.json documents, made once.

`images.zarr/` is an NGFF image whose only (full-resolution) array is `0`: axes `row`
(one image per row; a custom axis), then `c` for RGB rows, then `y`, `x` in pixels (the
sources' pixel size is not known, so the scale is 1). zarr-python builds the documents,
so they are what zarr-python, napari and dask expect; tiffsink then only ever rewrites the
array's shape.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import structlog

from ....config import ImageSpec, Storage
from ....errors import DatasetError
from ...fsio import fsync_dir
from ...layout import ARRAY, Layout
from .codec import chunk_shape, zarr_compressors

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


def _create(path: Path, spec: ImageSpec, storage: Storage) -> None:
    import zarr  # only zarr datasets pay for the import (a quarter of a second)

    group = zarr.create_group(path, zarr_format=3, attributes=ome_attributes(spec))
    chunk = chunk_shape(spec.row_shape)
    group.create_array(
        ARRAY,
        shape=(0, *chunk),
        dtype=spec.dtype,
        chunks=(1, *chunk),
        shards=(storage.shard_rows, *chunk),
        compressors=zarr_compressors(storage),
        fill_value=0,
        dimension_names=[a["name"] for a in axes(spec)],
    )


def create(path: Path, spec: ImageSpec, storage: Storage) -> None:
    """Write an empty image group at `path` (the caller renames it into place)."""
    _create(path, spec, storage)


def array_template(spec: ImageSpec, storage: Storage) -> dict[str, Any]:
    """The array's zarr.json as a dict for 0 rows: what an existing one must match."""
    with tempfile.TemporaryDirectory(prefix="tiffsink-template-") as tmp:
        create(Path(tmp), spec, storage)
        doc: dict[str, Any] = json.loads((Path(tmp) / ARRAY / "zarr.json").read_bytes())
    return doc


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
