"""Several datasets read as one training set: `tiffsink.open_collection([...])`.

Each part is a dataset folder or a published copy's URL (a URL whose prefix holds
several published datasets names them all). Rows follow part by part; each row's
metadata carries the part it came from as `dataset`, so `rows(dataset=...)` selects
one instrument's rows, and `snapshot()` pins every part at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import DatasetError
from .batches import Buffers, Window, batches
from .opener import open_dataset
from .reader import Dataset


def published_under(url: str) -> list[str]:
    """The URLs of every published dataset under a prefix URL, sorted."""
    from .remote import keys
    from .remote.target import open_target

    marker = "/" + keys.DATASET_JSON
    found = [k[: -len(marker)] for k in open_target(url).keys("") if k.endswith(marker)]
    return [f"{url.rstrip('/')}/{k}" for k in sorted(found)]


class Collection:
    """The parts' committed rows, one after another, with the part named in `meta`."""

    _buffers: Buffers | None = None  # batch arrays, reused across epochs

    def __init__(
        self,
        parts: Sequence[Dataset],
        names: Sequence[str],
        transform: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        if not parts:
            raise DatasetError(None, "a collection needs at least one dataset")
        first = parts[0]
        for p, name in zip(parts, names, strict=True):
            if p.row_shape != first.row_shape or p.dtype != first.dtype:
                raise DatasetError(
                    name,
                    f"rows of {p.row_shape} {p.dtype} cannot join rows of {first.row_shape} "
                    f"{first.dtype} ({names[0]})",
                )
        self.parts, self.names, self.transform = list(parts), list(names), transform
        self.row_shape, self.dtype = first.row_shape, first.dtype
        self._starts = np.zeros(len(parts) + 1, np.int64)
        self._count()

    def _count(self) -> None:
        self._starts[1:] = np.cumsum([len(p) for p in self.parts])

    def refresh(self) -> int:
        """Take in the rows every part committed (or published) since."""
        for p in self.parts:
            p.refresh()
        self._count()
        return len(self)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows outside 0..{len(self) - 1}")
        part = np.searchsorted(self._starts, rows, side="right") - 1
        return part, rows - self._starts[part]

    def take(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The given rows, in the given order, as (k, H, W[, C])."""
        rows = np.asarray(rows, dtype=np.int64)
        part, local = self._locate(rows)
        out = np.empty((len(rows), *self.row_shape), self.dtype)
        for k in np.unique(part):
            sel = part == k
            out[sel] = self.parts[int(k)].take(local[sel])
        return out

    def window(self, rows: np.ndarray) -> Window:
        """These rows fetched from their parts for `batches()`."""
        part, local = self._locate(np.asarray(rows, dtype=np.int64))
        return _PartsWindow(self, part, local)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.take(np.arange(start, min(stop, len(self)), dtype=np.int64))

    def meta(self, row: int) -> dict[str, Any]:
        """What the row shows, and `dataset`: the part it came from."""
        part, local = self._locate(np.asarray([row], np.int64))
        k = int(part[0])
        return {**self.parts[k].meta(int(local[0])), "dataset": self.names[k]}

    def rows(self, dataset: str | None = None, **equals: Any) -> np.ndarray:
        """Row numbers whose metadata matches, in row order; `dataset` picks a part."""
        found = [
            self.parts[k].rows(**equals) + self._starts[k]
            for k in range(len(self.parts))
            if dataset is None or self.names[k] == dataset
        ]
        return np.concatenate(found) if found else np.empty(0, np.int64)

    def __getitem__(self, i: int) -> Any:
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} is not committed (collection has {len(self)})")
        img: Any = self.take([i % len(self)])[0]
        return self.transform(img) if self.transform is not None else img

    def snapshot(self) -> Collection:
        """Every part pinned at its current rows."""
        return Collection([p.snapshot() for p in self.parts], self.names, self.transform)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = False,
    ) -> Iterator[np.ndarray]:
        """As `Dataset.batches`, over every part's rows."""
        S = self.parts[0].storage.shard_rows
        for _rows, imgs in batches(
            self, S, batch_size, shuffle, seed, epoch, drop_last, self._batch_buffers()
        ):
            yield imgs

    def __reduce__(self) -> tuple[Any, ...]:
        return (Collection, (self.parts, self.names, self.transform))

    def _batch_buffers(self) -> Buffers:
        """The batch arrays kept between epochs, so that each epoch starts on warm ones."""
        if self._buffers is None:
            self._buffers = Buffers()
        return self._buffers

    def close(self) -> None:
        self._buffers = None
        for p in self.parts:
            p.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _PartsWindow:
    """A collection's window: each part's rows fetched as that part fetches them."""

    def __init__(self, c: Collection, part: np.ndarray, local: np.ndarray) -> None:
        self.part, self.row_shape, self.dtype = part, c.row_shape, c.dtype
        self.wins: dict[int, Window] = {}
        self.at = np.empty(len(part), np.int64)  # position within its part's window
        for k in np.unique(part).tolist():
            sel = part == k
            self.wins[k] = c.parts[k].window(local[sel])
            self.at[sel] = np.arange(int(sel.sum()))

    def take(self, positions: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty((len(positions), *self.row_shape), self.dtype)
        part = self.part[positions]
        for k in np.unique(part).tolist():
            sel = part == k
            out[sel] = self.wins[k].take(self.at[positions[sel]])
        return out


def open_collection(
    sources: Sequence[str | os.PathLike[str]] | str,
    label: str | None = None,
    transform: Callable[[np.ndarray], Any] | None = None,
) -> Collection:
    """Datasets (folders or URLs) as one; a single URL names every published dataset
    under its prefix."""
    if isinstance(sources, str):
        sources = published_under(sources)
        if not sources:
            raise DatasetError(None, "no published tiffsink dataset under that prefix")
    names = [os.fspath(s) for s in sources]
    parts: list[Dataset] = []
    try:
        for s in sources:
            parts.append(open_dataset(s, label=label))
    except BaseException:
        for p in parts:
            p.close()
        raise
    return Collection(parts, names, transform)
