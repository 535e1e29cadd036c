"""Opening a dataset for writing: the index's meta against the config, then the store.

A dataset remembers its image spec and storage; a config that differs is refused before
any file is touched. A folder with rows but no index meta (creation never committed) is
refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
import uuid

from ..config import ImageSpec, Storage
from ..errors import DatasetError
from . import index
from .formats import RowStore, foreign, format_of
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
        if "dataset_id" not in stored:  # made before ids: it gets one now
            index.set_meta(conn, "dataset_id", uuid.uuid4().hex)
    else:
        found = foreign(layout, storage)
        if found is not None:
            raise DatasetError(
                layout.directory,
                f"holds a {found} dataset without an index, but [dataset] format is "
                f"{storage.format!r}; refusing to guess",
            )
    store = format_of(storage).open_store(layout, spec, storage)
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
