"""Training batches over a pinned dataset: a deterministic order, whole shards at a time.

The order is a function of (seed, epoch) and the row count only, so every epoch of a
run, and a rerun from a checkpoint that recorded the row count, reads the same batches
in the same order. Rows are shuffled at two levels, as streaming loaders do: the order
of the shards, then the rows within a window of shards. So every read is of whole shards
(one GET each on object storage), and the next windows are fetched while this one is
consumed.

A window is fetched, not copied: a reader hands back a `Window` that copies rows out on
demand, so each batch is assembled straight from what was fetched (on object storage,
from the GET bodies) in one allocation of its own, and no window-sized array is filled
first.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol, TypeVar

import numpy as np

WINDOW_SHARDS = 4  # shards whose rows are shuffled together (and fetched together)
PREFETCH = 2  # windows fetched ahead of the one being read
READY = 2  # batches assembled ahead of the one being used

T = TypeVar("T")


class Window(Protocol):
    """The fetched rows of one window (row numbers in reading order)."""

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The images at these positions of the window, as (k, H, W[, C])."""
        ...


class ArrayWindow:
    """A window already read into one array (local formats read it at once)."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def take(self, positions: np.ndarray) -> np.ndarray:
        if len(positions) and (np.diff(positions) == 1).all():  # a run: a view, no copy
            return self.images[positions[0] : positions[-1] + 1]
        return np.asarray(self.images[positions])


class _Rows(Protocol):
    def __len__(self) -> int: ...

    def window(self, rows: np.ndarray) -> Window: ...


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


def ahead(items: Iterator[T], depth: int) -> Iterator[T]:
    """`items`, produced by a thread of their own up to `depth` ahead of the consumer,
    so that assembling the next batch (its copies, its fresh pages) overlaps using this
    one. Stops the thread when the consumer stops early; re-raises what it raised."""
    ready: queue.Queue[tuple[bool, T | BaseException | None]] = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ready.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put((False, None))
        except BaseException as e:  # handed to the consumer, which raises it
            ready.put((False, e))

    t = threading.Thread(target=produce, name="tiffsink-batches", daemon=True)
    t.start()
    try:
        while True:
            more, item = ready.get()
            if not more:
                if isinstance(item, BaseException):
                    raise item
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        t.join()


def batches(
    ds: _Rows,
    rows_per_shard: int,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(row numbers, images) batches over every row of `ds`: the next windows fetched
    and the next batches assembled while this one is used."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    windows = order(len(ds), rows_per_shard, shuffle, seed, epoch)
    return ahead(_assemble(ds, windows, batch_size, drop_last), READY)


def _assemble(
    ds: _Rows, windows: list[np.ndarray], batch_size: int, drop_last: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The batches of `windows`, each copied out of its windows, the next ones fetched."""
    pending: list[tuple[np.ndarray, Window, np.ndarray]] = []  # pieces of the next batch
    held = 0  # rows in `pending`

    def flush() -> tuple[np.ndarray, np.ndarray]:
        rows = np.concatenate([r for r, _, _ in pending])
        imgs = np.concatenate([w.take(p) for _, w, p in pending])
        pending.clear()
        return rows, imgs

    with ThreadPoolExecutor(PREFETCH) as pool:
        fetching: deque[Future[Window]] = deque(
            pool.submit(ds.window, w) for w in windows[:PREFETCH]
        )
        for i, rows in enumerate(windows):
            win = fetching.popleft().result()
            if i + PREFETCH < len(windows):
                fetching.append(pool.submit(ds.window, windows[i + PREFETCH]))
            p = 0
            if held:  # complete the batch the last window began
                p = min(batch_size - held, len(rows))
                pending.append((rows[:p], win, np.arange(p)))
                held += p
                if held < batch_size:
                    continue
                yield flush()
                held = 0
            while p + batch_size <= len(rows):
                yield rows[p : p + batch_size], win.take(np.arange(p, p + batch_size))
                p += batch_size
            if p < len(rows):
                pending.append((rows[p:], win, np.arange(p, len(rows))))
                held = len(rows) - p
    if held and not drop_last:
        yield flush()
