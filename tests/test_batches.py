"""Training batches: every row once per epoch, each batch's images its rows', windows
fetched once each and batches assembled across their edges."""

from __future__ import annotations

import numpy as np
import pytest

from tiffsink.dataset.batches import READY, WINDOW_SHARDS, ArrayWindow, Buffers, batches


class Rows:
    """Rows whose image is their number, fetched window by window as a reader would."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.fetched: list[list[int]] = []

    def __len__(self) -> int:
        return self.n

    def window(self, rows: np.ndarray) -> ArrayWindow:
        self.fetched.append(rows.tolist())
        return ArrayWindow(np.repeat(rows, 4).reshape(len(rows), 2, 2).astype(np.int64))


@pytest.mark.parametrize("batch_size", [1, 5, 7, 64])
def test_each_batch_holds_its_rows_images_and_every_row_comes_once(batch_size: int) -> None:
    """Batches of any size, straddling windows or not, carry their own rows' images, and
    an epoch yields every row exactly once, in full batches but the last."""
    ds = Rows(101)
    got = list(batches(ds, 8, batch_size, shuffle=True, seed=3, epoch=1))
    for rows, imgs in got:
        np.testing.assert_array_equal(imgs[:, 0, 0], rows)
    assert sorted(np.concatenate([r for r, _ in got]).tolist()) == list(range(101))
    assert all(len(r) == batch_size for r, _ in got[:-1]) and 0 < len(got[-1][0]) <= batch_size


def test_every_window_is_fetched_once_as_whole_shards() -> None:
    """An epoch fetches each window once, and a window is whole shards."""
    ds = Rows(100)
    list(batches(ds, 8, 10, shuffle=True, seed=0, epoch=0))
    fetched = [sorted(w) for w in ds.fetched]
    assert sorted(r for w in fetched for r in w) == list(range(100))
    for w in fetched:
        shards = sorted({r // 8 for r in w})
        assert len(shards) <= WINDOW_SHARDS
        assert w == [r for s in shards for r in range(s * 8, min(100, s * 8 + 8))]


def test_drop_last_leaves_out_only_the_short_batch() -> None:
    """drop_last drops the final partial batch and nothing else."""
    got = list(batches(Rows(50), 8, 7, shuffle=False, drop_last=True))
    assert [len(r) for r, _ in got] == [7] * 7
    assert np.concatenate([r for r, _ in got]).tolist() == list(range(49))


def test_a_consumer_that_stops_early_stops_the_assembler() -> None:
    """Closing the iterator after one batch ends its assembling thread, with nothing
    fetched past the windows already asked for."""
    import threading

    ds = Rows(1000)
    it = batches(ds, 8, 4, shuffle=False)
    next(it)
    it.close()  # type: ignore[attr-defined]
    assert not [t for t in threading.enumerate() if t.name == "tiffsink-batches"]
    assert len(ds.fetched) < 1000 // (8 * WINDOW_SHARDS)


def test_an_error_while_fetching_reaches_the_consumer() -> None:
    """A window that cannot be fetched raises in the consumer, not in a lost thread."""

    class Broken(Rows):
        def window(self, rows: np.ndarray) -> ArrayWindow:
            if rows.min() >= 64:
                raise OSError("shard 2 is missing")
            return super().window(rows)

    it = batches(Broken(200), 8, 16, shuffle=False)
    with pytest.raises(OSError, match="shard 2 is missing"):
        list(it)


class Copied(ArrayWindow):
    """A window that copies each batch out, as a remote window copies from GET bodies."""

    def take(self, positions: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        out = np.empty((len(positions), *self.row_shape), self.dtype) if out is None else out
        out[...] = self.images[positions]
        return out


class RemoteRows(Rows):
    def window(self, rows: np.ndarray) -> ArrayWindow:
        return Copied(super().window(rows).images)


def test_a_batch_still_referenced_anywhere_is_never_overwritten() -> None:
    """Keeping only a view of each batch keeps its images: a batch in use is not reused."""
    kept = []
    for rows, imgs in batches(RemoteRows(400), 8, 16, shuffle=True, seed=1):
        kept.append((rows, imgs[:, 0]))  # a view; the batch array itself is dropped
    for rows, first in kept:
        np.testing.assert_array_equal(first[:, 0], rows)


def test_batches_the_consumer_drops_are_reused() -> None:
    """A consumer that drops each batch is served from a few recycled arrays, not from
    a fresh allocation per batch, and each still holds its own rows."""
    seen = set()
    count = 0
    for rows, imgs in batches(RemoteRows(2000), 8, 12, shuffle=True, seed=2):
        np.testing.assert_array_equal(imgs[:, 0, 0], rows)
        seen.add(id(imgs))
        count += 1
        del imgs
    assert count > 100 and len(seen) <= READY + 4


def test_the_pool_hands_out_only_arrays_no_one_else_holds() -> None:
    """A pooled array is handed out again once dropped, and not while anything (here a
    memoryview) refers to it."""
    pool = Buffers(keep=2)
    shape, dtype = (2, 3), np.dtype(np.uint8)
    a = pool.get(shape, dtype)
    held = memoryview(a)
    a_id = id(a)
    del a
    b = pool.get(shape, dtype)
    assert id(b) != a_id
    b_id = id(b)
    del b
    assert id(pool.get(shape, dtype)) == b_id
    held.release()


def test_a_later_epoch_starts_on_the_arrays_of_the_one_before() -> None:
    """Given the same pool, the second epoch's batches come from the first's arrays."""
    pool = Buffers()
    ds = RemoteRows(800)
    first = {id(imgs) for _, imgs in batches(ds, 8, 16, seed=0, epoch=0, buffers=pool)}
    second = {id(imgs) for _, imgs in batches(ds, 8, 16, seed=0, epoch=1, buffers=pool)}
    assert second <= first
