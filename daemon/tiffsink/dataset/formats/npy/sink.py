"""npy's worker side: a page's raw bytes, written at its final row of images.npy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..sink import FileSink, SinkSpec


class NpySink(FileSink):
    """One descriptor on images.npy; a slot holds the row as it is."""

    def payload(self, page: np.ndarray) -> memoryview:
        return page.data.cast("B")


@dataclass(frozen=True)
class NpySinkSpec(SinkSpec):
    path: str  # images.npy

    def open(self) -> NpySink:
        return NpySink(self.path)
