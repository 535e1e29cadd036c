"""Training batches over a pinned dataset: a deterministic order, whole shards at a time.

The order is a function of (seed, epoch) and the row count only, so every epoch of a
run, and a rerun from a checkpoint that recorded the row count, reads the same batches
in the same order. Rows are shuffled at two levels, as streaming loaders do: the order
of the shards, then the rows within a window of shards. So every read is of whole shards
(one GET each on object storage), and the next windows are fetched while this one is
consumed.

A window is fetched, not copied: a reader hands back a `Window` that copies rows out on
demand, so each batch is assembled straight from what was fetched (on object storage,
from the GET bodies), and no window-sized array is filled first.

Batch arrays are recycled once nothing refers to them (`Buffers`): a fresh batch-sized
array is mapped anew by the kernel and faulted in page by page, which on a VM that hands
freed memory back to its host cost up to ten times the copy itself.
"""

from __future__ import annotations

import queue
import sys
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

    row_shape: tuple[int, ...]
    dtype: np.dtype

    def take(self, positions: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The images at these positions of the window, as (k, H, W[, C]): written into
        `out` when given and a copy is needed (a window may return a view instead)."""
        ...


class ArrayWindow:
    """A window already read into one array (local formats read it at once)."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images
        self.row_shape, self.dtype = images.shape[1:], images.dtype

    def take(self, positions: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if len(positions) and (np.diff(positions) == 1).all():  # a run: a view, no copy
            return self.images[positions[0] : positions[-1] + 1]
        return np.take(self.images, positions, axis=0, out=out)


class Buffers:
    """Batch arrays, each handed out again once only this pool refers to it.

    Whatever keeps a batch alive (a view, a tensor from `torch.from_numpy`, a
    memoryview, a list) holds a reference to its array, so a batch still in use is never
    overwritten; one that is dropped is reused instead of freed, as freeing would have
    made it unusable anyway. A dataset keeps its pool across epochs, so an epoch starts
    on warm arrays. Without a GIL the count is not exact, so nothing is reused.
    """

    def __init__(self, keep: int = READY + 4) -> None:
        # queued, in use by the consumer, being filled, and spares
        self.keep = keep
        self.held: list[np.ndarray] = []
        self.lock = threading.Lock()  # two iterators of one dataset share the pool
        self.reuse = getattr(sys, "_is_gil_enabled", lambda: True)()

    def get(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A free array of this shape and type: a pooled one if free, else a new one."""
        with self.lock:
            if not self.reuse:
                return np.empty(shape, dtype)
            spare = None
            for i in range(len(self.held)):
                # the list's reference and getrefcount's argument: no one else's
                if sys.getrefcount(self.held[i]) == 2:
                    if self.held[i].shape == shape and self.held[i].dtype == dtype:
                        return self.held[i]
                    spare = i
            buf = np.empty(shape, dtype)
            if len(self.held) < self.keep:
                self.held.append(buf)
            elif spare is not None:  # a free array of another batch size gives way
                self.held[spare] = buf
            return buf


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
    buffers: Buffers | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(row numbers, images) batches over every row of `ds`: the next windows fetched
    and the next batches assembled (into arrays from `buffers`) while this one is used."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    windows = order(len(ds), rows_per_shard, shuffle, seed, epoch)
    return ahead(
        _assemble(
            ds, windows, batch_size, drop_last, buffers if buffers is not None else Buffers()
        ),
        READY,
    )


def _assemble(
    ds: _Rows, windows: list[np.ndarray], batch_size: int, drop_last: bool, buffers: Buffers
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The batches of `windows`, each copied out of its windows, the next ones fetched."""
    pending: list[tuple[np.ndarray, Window, np.ndarray]] = []  # pieces of the next batch
    held = 0  # rows in `pending`

    def buffer(win: Window) -> np.ndarray:
        return buffers.get((batch_size, *win.row_shape), win.dtype)

    def flush() -> tuple[np.ndarray, np.ndarray]:
        rows = np.concatenate([r for r, _, _ in pending])
        first = pending[0][1]
        if len(rows) == batch_size:
            imgs = buffer(first)
        else:  # the last, short batch
            imgs = np.empty((len(rows), *first.row_shape), first.dtype)
        at = 0
        for _, w, p in pending:
            part = imgs[at : at + len(p)]
            piece = w.take(p, part)
            if piece is not part:  # the window gave a view: copy it in
                part[...] = piece
            at += len(p)
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
                yield rows[p : p + batch_size], win.take(np.arange(p, p + batch_size), buffer(win))
                p += batch_size
            if p < len(rows):
                pending.append((rows[p:], win, np.arange(p, len(rows))))
                held = len(rows) - p
    if held and not drop_last:
        yield flush()
