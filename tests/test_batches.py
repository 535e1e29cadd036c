"""Training batches: every row once per epoch, each batch's images its rows', windows
fetched once each and batches assembled across their edges."""

from __future__ import annotations

import numpy as np
import pytest

from tiffsink.dataset.batches import WINDOW_SHARDS, ArrayWindow, batches


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
