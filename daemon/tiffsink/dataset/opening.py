"""Opening a dataset for writing: the index's meta against the config, then the store.

A dataset remembers its image spec and storage; a config that differs is refused before
any file is touched. A folder with rows but no index meta (creation never committed) is
refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3

from ..config import ImageSpec, Storage
from ..errors import DatasetError
from . import index
from .formats.base import RowStore
from .formats.npy import NpyStore
from .formats.zarrdense import DenseZarrStore
from .formats.zarrv3 import ZarrStore
from .layout import Layout
from .meta import check_spec, new_meta


def open_store(
    layout: Layout, conn: sqlite3.Connection, spec: ImageSpec, storage: Storage
) -> RowStore:
    """The dataset's RowStore, created (with the index's meta) for a new dataset."""
    # No meta yet means creation never committed (a crash right after connect made the
    # file): the index is as good as absent.
    index.ensure_schema(conn)
    stored = index.read_meta(conn)
    if stored:
        check_spec(layout.directory, stored, spec, storage)
    else:
        found = layout.format()
        if found not in (None, storage.format):
            raise DatasetError(
                layout.directory,
                f"holds a {found} dataset without an index, but [dataset] format is "
                f"{storage.format!r}; refusing to guess",
            )
    store: RowStore
    if storage.format == "zarr" and storage.compression == "none":
        store = DenseZarrStore(layout, spec, storage)
    elif storage.format == "zarr":
        store = ZarrStore(layout, spec, storage)
    else:
        store = NpyStore(layout, spec, storage)
    if not stored:
        try:
            n_claimed = store.claimed_rows()
            if n_claimed:
                raise DatasetError(
                    layout.index,
                    f"index is missing but {store.path.name} holds {n_claimed} rows; "
                    "refusing to guess",
                )
            index.create(conn, new_meta(spec, storage))
        except BaseException:
            store.close()
            raise
    return store
