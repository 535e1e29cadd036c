"""`open_dataset`: a dataset folder, or the URL of a published copy, with one API."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .reader import Dataset


def open_dataset(
    path: str | os.PathLike[str],
    snapshot: bool = False,
    label: str | None = None,
    transform: Callable[[np.ndarray], Any] | None = None,
) -> Dataset:
    """Open a dataset for reading; safe while a writer appends (call .refresh() to grow).
    A URL (s3://bucket/prefix, gs://, az://, file:///path) opens a published copy, with
    the same API.

    snapshot=True reads `index.snapshot.sqlite`, which a cluster backfill publishes for
    readers on other hosts (SQLite's WAL needs all processes on one host). `label` (by
    default the dataset's [metadata] label) and `transform` shape what `ds[i]` returns."""
    if isinstance(path, str) and "://" in path:
        from .remote.reader import RemoteDataset  # obstore and zarr: only when asked for

        return RemoteDataset(path, label, transform)
    return Dataset(path, snapshot, label, transform)
