"""The committer thread: one commit at a time, whose end wakes the supervisor's poll."""

from __future__ import annotations

import select
from pathlib import Path

import numpy as np

from tiffsink.config import ImageSpec, Storage
from tiffsink.dataset import DatasetWriter
from tiffsink.dataset.records import RowRecord
from tiffsink.pipeline.committer import Committer
from tiffsink.pipeline.instructions import Commit


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
