"""The image spec as the index's `meta` table stores it, and the check on open.

A dataset remembers the spec its rows were made with; a writer whose config differs is
refused with every differing key, so rows of two specs can never be mixed.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

from ..config import ImageSpec, Storage
from ..errors import SpecMismatchError
from ..version import version
from . import index
from .formats import format_of

LEGACY = Storage()  # how datasets made before formats existed store rows


def storage_identity(storage: Storage) -> dict[str, Any]:
    """What the index's meta remembers of a storage config (its format decides)."""
    return format_of(storage).identity(storage)


def new_meta(spec: ImageSpec, storage: Storage) -> dict[str, Any]:
    """What a new dataset's meta table starts with."""
    return {
        "image": spec.identity(),
        "storage": storage_identity(storage),
        "format_version": index.FORMAT_VERSION,
        "tiffsink_version": version(),  # read here: workers never need it
        "created_at": index.now(),
        "dataset_id": uuid.uuid4().hex,  # what a published copy is recognised by
    }


def check_spec(directory: Path, stored: dict[str, Any], spec: ImageSpec, storage: Storage) -> None:
    """Refuse a config whose image spec or storage differs, naming every differing key."""
    diffs: dict[str, tuple[object, object]] = {}
    for section, have, want in (
        ("image", stored.get("image", {}), spec.identity()),
        ("dataset", stored.get("storage", storage_identity(LEGACY)), storage_identity(storage)),
    ):
        for k in want:
            if have.get(k) != want.get(k):
                diffs[f"{section}.{k}"] = (have.get(k), want.get(k))
    if diffs:
        raise SpecMismatchError(directory, diffs)


def storage_from_meta(meta: dict[str, Any]) -> Storage:
    """How a dataset stores its rows (datasets made before formats existed are npy)."""
    return Storage(**meta.get("storage", storage_identity(LEGACY)))


def spec_from_meta(meta: dict[str, Any]) -> ImageSpec:
    """The ImageSpec a dataset was created with (for verify and repair, which take no config)."""
    image = dict(meta["image"])
    if isinstance(image.get("intensity"), list):
        image["intensity"] = tuple(image["intensity"])
    return ImageSpec(**image)


def set_label(conn: sqlite3.Connection, key: str) -> None:
    """Remember which metadata key is the class label; not part of the spec: it may
    change between runs."""
    if index.read_meta(conn).get("label", "") != key:
        index.set_meta(conn, "label", key)
