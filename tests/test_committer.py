"""The committer thread: one commit at a time, whose end wakes the supervisor's poll."""

from __future__ import annotations

import select
import threading
from pathlib import Path

import numpy as np

from tiffsink.config import ImageSpec, Storage
from tiffsink.dataset import DatasetWriter
from tiffsink.dataset.records import RowRecord
from tiffsink.pipeline.committer import Committer
from tiffsink.pipeline.instructions import Commit

SPEC = ImageSpec(height=4, width=4)


def commit_one(writer: DatasetWriter, committer: Committer, batch_id: int) -> None:
    """Write one row and commit it through the committer, reaping the commit."""
    row = writer.write_row(np.full((4, 4), batch_id, np.uint16))
    rec = RowRecord(row, f"/f{batch_id}", 0, 1, 0, "h", 4, 4, "uint16", 1, 0.0)
    committer.start(Commit(batch_id, (), [rec], [], []))
    assert committer.reap(wait=True) is not None


def test_a_finished_commit_wakes_the_poll_until_it_is_reaped(tmp_path: Path) -> None:
    """The wake fd turns readable when a commit ends (so the supervisor starts the next
    one at once, not at its poll timeout), and reaping the commit clears it."""
    writer = DatasetWriter(tmp_path / "ds", ImageSpec(height=4, width=4), Storage("npy"))
    committer = Committer(writer)
    try:
        poll = select.poll()
        poll.register(committer.wake_fd, select.POLLIN)
        assert poll.poll(0) == []
        row = writer.write_row(np.full((4, 4), 7, np.uint16))
        rec = RowRecord(row, "/f0", 0, 1, 0, "h", 4, 4, "uint16", 1, 0.0)
        committer.start(Commit(1, (), [rec], [], []))
        assert poll.poll(30_000)  # the deadline only bounds a broken run
        done = committer.reap(wait=False)
        assert done is not None and done.batch_id == 1 and writer.committed == 1
        assert poll.poll(0) == []
    finally:
        committer.close()
        writer.close()


def test_waiting_for_the_commit_returns_when_it_ends(tmp_path: Path) -> None:
    """With no worker busy, the supervisor waits on the running commit itself: the wait
    returns with the commit done, and returns at once when none runs."""
    writer = DatasetWriter(tmp_path / "ds", ImageSpec(height=4, width=4), Storage("npy"))
    committer = Committer(writer)
    try:
        committer.wait(30.0)  # none running: returns at once
        row = writer.write_row(np.full((4, 4), 7, np.uint16))
        rec = RowRecord(row, "/f0", 0, 1, 0, "h", 4, 4, "uint16", 1, 0.0)
        committer.start(Commit(1, (), [rec], [], []))
        committer.wait(30.0)
        assert committer.reap(wait=False) is not None
    finally:
        committer.close()
        writer.close()


def test_the_readers_count_reaches_every_committed_row_by_close(tmp_path: Path) -> None:
    """Raised beside the commits, the count readers see (npy's header) ends equal to
    the committed rows, once the committer has closed."""
    writer = DatasetWriter(tmp_path / "ds", SPEC, Storage("npy"))
    committer = Committer(writer)
    try:
        for b in range(1, 6):
            commit_one(writer, committer, b)
    finally:
        committer.close()
    assert writer.store.claimed_rows() == writer.committed == 5
    writer.close()


def test_raises_queued_behind_a_newer_one_are_skipped_and_never_pass_the_index(
    tmp_path: Path,
) -> None:
    """While a raise is slow, later commits go on; of the raises queued behind it only
    the newest runs, and every count raised was committed when it was raised."""
    writer = DatasetWriter(tmp_path / "ds", SPEC, Storage("zarr", 8, "none", 1))
    release = threading.Event()
    raised: list[tuple[int, int]] = []  # (count raised, committed rows at the time)
    publish = writer.store.publish

    def slow_publish(n: int) -> None:
        raised.append((n, writer.committed))
        release.wait(30)
        publish(n)

    writer.store.publish = slow_publish  # type: ignore[method-assign]
    committer = Committer(writer)
    try:
        commit_one(writer, committer, 1)  # its raise now blocks
        for b in range(2, 5):
            commit_one(writer, committer, b)
        release.set()
    finally:
        committer.close()
    assert [n for n, _ in raised] == [1, 4]
    assert all(n <= committed for n, committed in raised)
    assert writer.store.claimed_rows() == 4
    writer.close()


def test_a_store_whose_publish_finishes_its_commit_publishes_inside_it(tmp_path: Path) -> None:
    """A blosc dataset (its publish frees what its make_durable staged) has its count
    raised by the commit itself: readers see the rows once the commit is reaped."""
    writer = DatasetWriter(tmp_path / "ds", SPEC, Storage("zarr", 8, "blosc-lz4", 1))
    committer = Committer(writer)
    try:
        for b in range(1, 4):
            commit_one(writer, committer, b)
            assert writer.store.claimed_rows() == writer.committed == b
    finally:
        committer.close()
        writer.close()
