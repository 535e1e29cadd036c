"""The worker's side of a format: write one decoded page into its reserved pending slot.

The supervisor reserves a row and tells the worker the byte address of its slot; the
format decides what a slot holds (npy: the raw row at its final place; uncompressed zarr:
the row's chunk at its place in its shard; compressed zarr: the encoded chunk, length
first, in `pending.rows`). Each format's store builds its own `SinkSpec`, a picklable
description sent to the workers at spawn, which `open`s the format's `RowSink` there.
Compression thus runs in the workers, on every core, and the supervisor never touches
pixels.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

import numpy as np

from ...config import ImageSpec
from ..fsio import pwrite_all


class RowSink(ABC):
    """A worker's way into the pending rows of one dataset."""

    @abstractmethod
    def payload(self, page: np.ndarray) -> memoryview:
        """The bytes the slot of this page holds."""

    @abstractmethod
    def write(self, address: int, payload: memoryview) -> None:
        """Write a payload at a slot's byte address."""

    @abstractmethod
    def close(self) -> None:
        """Release what the sink holds open."""


class SinkSpec(ABC):
    """What a worker needs to write pending rows (picklable: it is sent at spawn)."""

    @abstractmethod
    def open(self) -> RowSink:
        """The sink this spec describes, opened in the calling process."""


class FileSink(RowSink):
    """A sink whose slots are byte ranges of one file: one descriptor, pwrite."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)

    def write(self, address: int, payload: memoryview) -> None:
        pwrite_all(self.fd, payload, address)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def as_page(data: np.ndarray | bytes, spec: ImageSpec) -> np.ndarray:
    """A row given as an array or raw bytes, as a page of the spec's shape and dtype."""
    page = np.asarray(data) if isinstance(data, np.ndarray) else np.frombuffer(data, "u1")
    if page.nbytes != spec.row_bytes:
        raise ValueError(f"row is {page.nbytes} bytes, expected {spec.row_bytes}")
    return page.view(spec.dtype).reshape(spec.row_shape)
