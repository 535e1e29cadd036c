"""The worker pool with real spawned workers: rows written to a dataset's pending rows,
crashes and hangs contained."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tiffsink.config import ImageSpec
from tiffsink.dataset import DatasetWriter
from tiffsink.decode import decode_file
from tiffsink.decode.outcome import Outcome
from tiffsink.errors import WorkerStartError
from tiffsink.pipeline import starts
from tiffsink.pipeline.messages import Task
from tiffsink.pipeline.pool import BUNDLE, QUEUE_DEPTH, Lost, Pool
from tiffsink.testing import faults

from corpus import gray, write_tiff

SPEC = ImageSpec(height=32, width=24, dtype="uint16")


def collect(
    pool: Pool, want: int, timeout_s: float = 60
) -> tuple[list[tuple[Task, Outcome]], list[Lost]]:
    """Poll until `want` tasks finished or were lost, or fail at the deadline."""
    done: list[tuple[Task, Outcome]] = []
    lost: list[Lost] = []
    deadline = time.monotonic() + timeout_s
    while len(done) + len(lost) < want:
        assert time.monotonic() < deadline, f"only {len(done)} done, {len(lost)} lost"
        d, lo = pool.poll(0.1)
        done += d
        lost += lo
    return done, lost


class Rows:
    """Pending rows of a real dataset for the pool's workers to write (npy: a row's slot is
    the row itself)."""

    def __init__(self, directory: Path) -> None:
        self.writer = DatasetWriter(directory, SPEC)
        self.sink = self.writer.store.sink()

    def task(self, task_id: int, path: Path, row: int) -> Task:
        """Decode `path`'s first page into pending row `row`."""
        self.writer.reserve(row + 1)
        return Task(
            task_id, str(path), str(path.parent), 0, (row,), (self.writer.offset(row),), None
        )

    def pixels(self, row: int) -> np.ndarray:
        data = self.writer.store.read_slot(row)
        return np.frombuffer(data, SPEC.dtype).reshape(SPEC.row_shape)


@pytest.fixture
def ds(tmp_path: Path) -> Iterator[Rows]:
    rows = Rows(tmp_path / "ds")
    yield rows
    rows.writer.close()


@pytest.fixture
def src(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    d.mkdir()
    for name in ("good.tif", "victim.tif", "stuck.tif"):
        write_tiff(d / name, gray(seed=len(name)))
    return d


def test_result_lands_in_the_row_the_task_named(ds: Rows, src: Path) -> None:
    """The worker writes the decoded row into the pending row its task names, nothing else."""
    pool = Pool(SPEC, workers=1, timeout_s=30, sink=ds.sink)
    try:
        pool.submit(ds.task(1, src / "good.tif", 2))
        [(t, out)], lost = collect(pool, 1)
        assert lost == [] and not out.failed and t.task_id == 1
        row = ds.pixels(2)
        [(_, want)] = decode_file(src / "good.tif", SPEC)
        assert np.array_equal(row, want)
        assert out.size == (src / "good.tif").stat().st_size and out.pages_total == 1
    finally:
        pool.close()


def test_capacity_is_queue_depth_per_worker(ds: Rows, src: Path) -> None:
    """Each worker takes QUEUE_DEPTH tasks; a full pool refuses another submit."""
    pool = Pool(SPEC, workers=2, timeout_s=30, sink=ds.sink)
    try:
        assert pool.capacity == 2 * QUEUE_DEPTH
        for i in range(2 * QUEUE_DEPTH):
            pool.submit(ds.task(i, src / "good.tif", i))
        assert pool.capacity == 0
        with pytest.raises(RuntimeError):
            pool.submit(ds.task(99, src / "good.tif", 0))
        done, _lost = collect(pool, 2 * QUEUE_DEPTH)
        assert len(done) == 2 * QUEUE_DEPTH and pool.capacity == 2 * QUEUE_DEPTH
    finally:
        pool.close()


def test_a_short_bundle_waits_behind_a_full_one_and_is_still_answered(ds: Rows, src: Path) -> None:
    """A task queued while its worker holds a full bundle unanswered is held, not sent in a
    message of its own, and goes out (and is answered) once that bundle is."""
    pool = Pool(SPEC, workers=1, timeout_s=30, sink=ds.sink)
    try:
        for i in range(BUNDLE + 1):
            pool.submit(ds.task(i, src / "good.tif", i))
            pool.flush()
        assert len(pool.handles[0].outbox) == 1
        done, lost = collect(pool, BUNDLE + 1)
        assert lost == [] and sorted(t.task_id for t, _ in done) == list(range(BUNDLE + 1))
    finally:
        pool.close()


def test_crash_is_reported_replaced_and_the_task_behind_it_resubmitted(
    ds: Rows, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A segfault costs only its task (decoder_crash); the next task queued on that worker
    is sent again and completes on the replacement worker."""
    monkeypatch.setenv(faults.ENV, "segv=victim")
    pool = Pool(SPEC, workers=1, timeout_s=30, sink=ds.sink)
    try:
        first_pid = pool.handles[0].proc.pid
        pool.submit(ds.task(1, src / "victim.tif", 0))
        pool.submit(ds.task(2, src / "good.tif", 1))
        done, lost = collect(pool, 2)
        assert [(lo.task.task_id, lo.reason) for lo in lost] == [(1, "decoder_crash")]
        assert "signal" in lost[0].detail
        assert [(t.task_id, out.failed) for t, out in done] == [(2, False)]
        assert pool.handles[0].proc.pid != first_pid
    finally:
        pool.close()


def test_a_crash_inside_a_bundle_costs_only_the_task_it_was_on(
    ds: Rows, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks sent in one message: the worker dies on the third; its heartbeat names it, so
    only that task is lost, and the two before it (done, answer lost with the worker) and
    the two after it are answered by the replacement."""
    monkeypatch.setenv(faults.ENV, "segv=victim")
    pool = Pool(SPEC, workers=1, timeout_s=30, sink=ds.sink)
    try:
        names = ["good.tif", "good.tif", "victim.tif", "good.tif", "good.tif"]
        for i, name in enumerate(names):
            pool.submit(ds.task(i + 1, src / name, i))
        done, lost = collect(pool, 5)
        assert [(lo.task.task_id, lo.reason) for lo in lost] == [(3, "decoder_crash")]
        assert sorted(t.task_id for t, out in done if not out.failed) == [1, 2, 4, 5]
    finally:
        pool.close()


def test_a_bundle_slower_than_the_timeout_is_not_a_hang(
    ds: Rows, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The timeout is per task, counted from the heartbeat: a bundle of three tasks of a
    second each runs past a 1.5 s timeout in all, and every task completes."""
    monkeypatch.setenv(faults.ENV, "slow=good")
    pool = Pool(SPEC, workers=1, timeout_s=1.5, sink=ds.sink)
    try:
        for i in range(3):
            pool.submit(ds.task(i + 1, src / "good.tif", i))
        t0 = time.monotonic()
        done, lost = collect(pool, 3)
        assert time.monotonic() - t0 > 1.5, "the bundle should outlast one timeout"
        assert lost == [] and len(done) == 3
    finally:
        pool.close()


def test_a_hang_inside_a_bundle_times_out_only_that_task(
    ds: Rows, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker hangs on the second task of a bundle: that one is lost as a timeout,
    the others complete."""
    monkeypatch.setenv(faults.ENV, "hang=stuck")
    pool = Pool(SPEC, workers=1, timeout_s=1.0, sink=ds.sink)
    try:
        for i, name in enumerate(["good.tif", "stuck.tif", "good.tif"]):
            pool.submit(ds.task(i + 1, src / name, i))
        done, lost = collect(pool, 3)
        assert [(lo.task.task_id, lo.reason) for lo in lost] == [(2, "timeout")]
        assert sorted(t.task_id for t, _ in done) == [1, 3]
    finally:
        pool.close()


def test_hung_worker_is_killed_after_timeout(
    ds: Rows, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No answer within timeout_s: the task is lost as a timeout and the worker replaced."""
    monkeypatch.setenv(faults.ENV, "hang=stuck")
    pool = Pool(SPEC, workers=1, timeout_s=1.0, sink=ds.sink)
    try:
        first = pool.handles[0].proc
        pool.submit(ds.task(1, src / "stuck.tif", 0))
        done, lost = collect(pool, 1)
        assert done == [] and [lo.reason for lo in lost] == ["timeout"]
        assert not first.is_alive() and pool.handles[0].proc.is_alive()
    finally:
        pool.close()


def test_close_stops_workers_and_removes_the_arena(ds: Rows, src: Path) -> None:
    """After close no worker runs and the /dev/shm file is gone."""
    pool = Pool(SPEC, workers=2, timeout_s=30, sink=ds.sink)
    procs = [h.proc for h in pool.handles]
    path = pool.arena.path
    pool.close()
    assert not path.exists()
    assert all(not p.is_alive() for p in procs)


def test_a_worker_that_never_starts_is_a_start_error_once_the_bound_passes(
    ds: Rows, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Death before READY is retried with backoff; past the bound it is WorkerStartError,
    never a decoder_crash charged to the file the worker was sent."""
    monkeypatch.setenv(faults.ENV, "worker_start=exit")
    monkeypatch.setattr(starts, "GIVE_UP_S", 1.5)
    pool = Pool(SPEC, workers=1, timeout_s=30, sink=ds.sink)
    try:
        pool.submit(ds.task(1, src / "good.tif", 0))
        with pytest.raises(WorkerStartError, match="could not start"):
            collect(pool, 1)
        assert pool.starts.failing[0].tries >= 2  # tried again before giving up
    finally:
        pool.close()


def test_a_worker_that_fails_to_start_for_a_while_is_retried(
    ds: Rows, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A passing start fault: its slot is tried again with backoff, the problem is
    reported meanwhile, and the task it held completes once a worker starts."""
    flag = tmp_path / "broken"
    flag.touch()
    monkeypatch.setenv(faults.ENV, f"worker_start={flag}")
    pool = Pool(SPEC, workers=1, timeout_s=30, sink=ds.sink)
    try:
        pool.submit(ds.task(1, src / "good.tif", 0))
        deadline = time.monotonic() + 60
        while pool.starts.problem() is None:
            assert time.monotonic() < deadline
            assert pool.poll(0.1) == ([], [])
        assert "failed to start" in (pool.starts.problem() or "")
        flag.unlink()
        [(t, out)], lost = collect(pool, 1)
        assert t.task_id == 1 and not out.failed and lost == []
        assert pool.starts.problem() is None
    finally:
        pool.close()


def test_replacement_workers_start_after_the_arena_file_is_removed(ds: Rows, src: Path) -> None:
    """Workers get the arena by descriptor: removing its /dev/shm file does not stop a
    crashed worker's replacement from starting and decoding."""
    pool = Pool(SPEC, workers=1, timeout_s=30, sink=ds.sink)
    try:
        pool.submit(ds.task(1, src / "good.tif", 0))
        collect(pool, 1)
        pool.arena.path.unlink()
        old = pool.handles[0].proc
        old.kill()
        deadline = time.monotonic() + 60
        while not (pool.handles and pool.handles[0].proc is not old and pool.handles[0].ready):
            assert time.monotonic() < deadline, pool.starts.problem()
            pool.poll(0.1)
        pool.submit(ds.task(2, src / "good.tif", 1))
        [(t, out)], lost = collect(pool, 1)
        assert t.task_id == 2 and not out.failed and lost == []
        assert pool.starts.problem() is None
        row = ds.pixels(1)
        [(_, want)] = decode_file(src / "good.tif", SPEC)
        assert np.array_equal(row, want)
    finally:
        pool.close()
