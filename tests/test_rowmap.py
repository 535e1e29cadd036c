"""Gathering a batch's rows before its commit: holes filled, later rows swapped out."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tiffsink.batch import Candidate
from tiffsink.config import ImageSpec
from tiffsink.dataset import DatasetWriter
from tiffsink.decode import PageInfo
from tiffsink.pipeline.committer import apply_moves
from tiffsink.pipeline.jobs import Batch, Job, Row
from tiffsink.pipeline.rowmap import RowMap

SPEC = ImageSpec(height=3, width=4, dtype="uint16")
INFO = PageInfo(0, 3, 4, "uint16", 1)


class Rows:
    """A writer and row map on a fresh dataset, with pages whose pixels name their job."""

    def __init__(self, tmp: Path) -> None:
        self.w = DatasetWriter(tmp, SPEC)
        self.map = RowMap(self.w.committed)
        self.tasks = 0

    def job(self, batch: Batch, name: str) -> Job:
        j = Job(Candidate(f"/in/{name}.tif"), batch)
        batch.add(j)
        return j

    def reserve(self) -> tuple[int, ...]:
        self.tasks += 1
        rows = self.map.reserve(self.tasks, 1)
        self.w.reserve(rows[-1] + 1)
        return rows

    def write(self, job: Job, rows: tuple[int, ...], value: int) -> None:
        """What a worker does, then its answer arriving."""
        self.w.store.rows.write(rows[0], np.full(SPEC.row_shape, value, np.uint16).tobytes())
        self.map.end_task(rows, job, [INFO])

    def gather(self, batch: Batch) -> list[Row] | None:
        """The state machine's gather, its moves done on disk as the committer does them."""
        got = self.map.gather(batch)
        if got is None:
            return None
        rows, moves = got
        apply_moves(self.w, moves)
        return rows

    def value(self, row: int) -> int:
        data = np.frombuffer(_read(self.w, row), np.uint16)
        assert (data == data[0]).all()
        return int(data[0])


def _read(w: DatasetWriter, row: int) -> bytes:
    return os.pread(w.store.pending_fd, w.row_bytes, w.offset(row))


@pytest.fixture
def r(tmp_path: Path) -> Rows:
    return Rows(tmp_path)


def test_a_batch_in_one_run_moves_nothing(r: Rows) -> None:
    """The usual case: the batch's rows are already the next ones, in order."""
    a = Batch(1)
    for i in range(3):
        r.write(r.job(a, f"a{i}"), r.reserve(), 10 + i)
    rows = r.gather(a)
    assert rows is not None and [x.pos for x in rows] == [0, 1, 2]
    assert [r.value(i) for i in range(3)] == [10, 11, 12]


def test_a_hole_is_filled_by_the_batchs_last_row(r: Rows) -> None:
    """A failed file's row is a hole; the batch's row beyond its range moves into it."""
    a = Batch(1)
    r.write(r.job(a, "a0"), r.reserve(), 10)
    failed = r.job(a, "a1")
    r.map.release(r.reserve())  # the worker failed on it: a hole at row 1
    failed.finish()
    r.write(r.job(a, "a2"), r.reserve(), 12)
    rows = r.gather(a)
    assert rows is not None and [x.pos for x in rows] == [0, 1]
    assert [x.job.cand.path for x in rows] == ["/in/a0.tif", "/in/a2.tif"]
    assert [r.value(i) for i in range(2)] == [10, 12]


def test_a_later_batchs_row_in_the_way_is_swapped_out(r: Rows) -> None:
    """A continuation reserved after the next batch's row: the two rows are exchanged, and
    the later batch's page follows its row."""
    a, b = Batch(1), Batch(2)
    r.write(r.job(a, "a0"), r.reserve(), 10)
    bj = r.job(b, "b0")
    r.write(bj, r.reserve(), 20)
    r.write(r.job(a, "a1"), r.reserve(), 11)
    rows = r.gather(a)
    assert rows is not None and [x.pos for x in rows] == [0, 1]
    assert [r.value(i) for i in range(3)] == [10, 11, 20]
    assert [x.pos for x in bj.rows] == [2] and r.map.written[2] is bj.rows[0]


def test_a_row_still_being_written_blocks_the_gather(r: Rows) -> None:
    """If a target row is reserved by a task still in flight, gather waits (None)."""
    a, b = Batch(1), Batch(2)
    r.write(r.job(a, "a0"), r.reserve(), 10)
    bj = r.job(b, "b0")
    in_flight = r.reserve()
    r.write(r.job(a, "a1"), r.reserve(), 11)
    assert r.gather(a) is None
    r.write(bj, in_flight, 20)
    rows = r.gather(a)
    assert rows is not None and [r.value(i) for i in range(3)] == [10, 11, 20]


def test_a_failed_files_pages_become_holes(r: Rows) -> None:
    """take_back: a file failing after some pages were written gives its rows up."""
    a = Batch(1)
    j = r.job(a, "multi")
    r.write(j, r.reserve(), 30)
    r.map.take_back(j)
    assert j.rows == [] and r.map.written == {}
    assert r.gather(a) == []
