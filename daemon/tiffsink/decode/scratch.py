"""Reusable, growing byte buffers for one decoding process.

Steady-state decoding allocates nothing: each named buffer only grows, and a big one is
dropped after a file that did not use it, so one huge file does not pin its memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = np.ndarray[Any, np.dtype[Any]]
KEEP_BYTES = 64 << 20  # bigger scratch is dropped after a file that did not use it


class Scratch:
    """Named byte buffers that only grow, so steady-state decoding allocates nothing."""

    def __init__(self) -> None:
        self.bufs: dict[str, Array] = {}
        self.used: set[str] = set()

    def raw(self, name: str, nbytes: int) -> Array:
        self.used.add(name)
        b = self.bufs.get(name)
        if b is None or b.nbytes < nbytes:
            self.bufs.pop(name, None)  # free the old one before allocating the new
            b = self.bufs[name] = np.empty(nbytes, np.uint8)
        return b

    def get(self, name: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Array:
        n = int(np.prod(shape)) * dtype.itemsize
        return self.raw(name, n)[:n].view(dtype).reshape(shape)

    def trim(self) -> None:
        """After a file: drop big buffers it did not need (a run of big files keeps them)."""
        for k in [k for k, b in self.bufs.items() if b.nbytes > KEEP_BYTES]:
            if k not in self.used:
                del self.bufs[k]
        self.used.clear()
