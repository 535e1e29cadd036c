"""Reading images.npy: a read-only memmap of the rows the index has committed.

The row count comes from the index (the commit point), not from the header, so a reader
never maps a row that is not committed; the header may lag the index by one batch during
a commit, never lead it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ....config import ImageSpec
from ....errors import DatasetError
from ..base import RowReader
from .header import HEADER_BYTES


class NpyReader(RowReader):
    """images.npy as np.memmap (N, H, W[, C]); `take` is fancy indexing of it."""

    def __init__(self, path: Path, spec: ImageSpec) -> None:
        self.path, self.spec = path, spec
        self.dtype = np.dtype(spec.dtype).newbyteorder("<")
        self.images: Any = np.empty((0, *spec.row_shape), self.dtype)

    def refresh(self, committed: Callable[[], int], snapshot: bool) -> int:
        n = committed()
        if n == 0:
            self.images = np.empty((0, *self.spec.row_shape), self.dtype)
            return 0
        need = HEADER_BYTES + n * int(np.prod(self.spec.row_shape)) * self.dtype.itemsize
        if self.path.stat().st_size < need:
            raise DatasetError(self.path, f"index commits {n} rows but the file is shorter")
        self.images = np.memmap(
            self.path,
            dtype=self.dtype,
            mode="r",
            offset=HEADER_BYTES,
            shape=(n, *self.spec.row_shape),
        )
        return n

    def take(self, rows: np.ndarray, n: int) -> np.ndarray:
        if rows.size and not (rows.min() >= 0 and rows.max() < n):
            raise IndexError(f"rows outside 0..{n - 1}")
        return np.asarray(self.images[rows])
