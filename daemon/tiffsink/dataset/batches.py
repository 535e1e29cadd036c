"""Training batches over a pinned dataset: a deterministic order, whole shards at a time.

The order is a function of (seed, epoch) and the row count only, so every epoch of a
run, and a rerun from a checkpoint that recorded the row count, reads the same batches
in the same order. Rows are shuffled at two levels, as streaming loaders do: the order
of the shards, then the rows within a window of shards. So every read is of whole shards
(one GET each on object storage), and the next window is fetched while this one is
consumed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import numpy as np

WINDOW_SHARDS = 4  # shards whose rows are shuffled together (and fetched together)
PREFETCH = 2  # windows fetched ahead of the one being read


class _Rows(Protocol):
    def __len__(self) -> int: ...

    def take(self, rows: np.ndarray) -> np.ndarray: ...


def order(n: int, rows_per_shard: int, shuffle: bool, seed: int, epoch: int) -> list[np.ndarray]:
    """The epoch's windows of row numbers, in reading order."""
    S = max(1, rows_per_shard)
    shards = np.arange((n + S - 1) // S)
    rng = np.random.default_rng([seed, epoch])
    if shuffle:
        rng.shuffle(shards)
    windows = []
    for w in range(0, len(shards), WINDOW_SHARDS):
        rows = np.concatenate(
            [
                np.arange(s * S, min(n, (s + 1) * S), dtype=np.int64)
                for s in shards[w : w + WINDOW_SHARDS]
            ]
        )
        if shuffle:
            rng.shuffle(rows)
        windows.append(rows)
    return windows


def batches(
    ds: _Rows,
    rows_per_shard: int,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(row numbers, images) batches over every row of `ds`, the next window prefetched."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    windows = order(len(ds), rows_per_shard, shuffle, seed, epoch)
    rows_left = np.empty(0, np.int64)
    imgs_left: np.ndarray | None = None
    with ThreadPoolExecutor(PREFETCH) as pool:
        ahead: deque[Future[np.ndarray]] = deque(
            pool.submit(ds.take, w) for w in windows[:PREFETCH]
        )
        for i, rows in enumerate(windows):
            imgs = ahead.popleft().result()
            if i + PREFETCH < len(windows):
                ahead.append(pool.submit(ds.take, windows[i + PREFETCH]))
            if imgs_left is not None and len(rows_left):
                rows, imgs = np.concatenate([rows_left, rows]), np.concatenate([imgs_left, imgs])
            k = len(rows) - len(rows) % batch_size
            for b in range(0, k, batch_size):
                yield rows[b : b + batch_size], imgs[b : b + batch_size]
            rows_left, imgs_left = rows[k:], imgs[k:]
    if len(rows_left) and not drop_last:
        assert imgs_left is not None
        yield rows_left, imgs_left
