"""One specification, every storage format: the commit protocol, readers, recovery, verify.

zarr-python's StoreTests habit: the same state machine and the same concurrent reader run
against npy and zarr (uncompressed, and zstd with other shard boundaries). A crash is a
failpoint that raises out of the commit, after which the writer is dropped without its
close() (the page cache survives, as it does for kill -9).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tiffsink import open_dataset
from tiffsink.config import ImageSpec, Storage
from tiffsink.dataset.records import FailureRecord, RowRecord
from tiffsink.dataset.verify import verify
from tiffsink.dataset.writer import DatasetWriter
from tiffsink.testing import faults

from conftest import wait_for
from formats import NPY, STORAGES, ZARR, ZARR_ZSTD, leftover, raw_rows, tear, tear_publish

SPEC = ImageSpec(height=3, width=4, dtype="uint16")
SPEC_RGB = ImageSpec(height=3, width=4, channels=3, dtype="uint8")


class _Crash(BaseException):
    """Stands for SIGKILL at a failpoint: nothing after it runs, not even close()."""


def record(row: int) -> RowRecord:
    return RowRecord(row, f"/inbox/frame_{row:06d}.tif", 0, 100, 1, "0" * 32, 3, 4, "u2", 1, 1.0)


def drop(w: DatasetWriter) -> None:
    """Abandon a writer as kill -9 would: its descriptors go, none of close()'s cleanup runs."""
    w.conn.close()
    w.store.close()
    os.close(w._lock_fd)


CRASH_POINTS = (
    "mid_write",  # rows (the last one possibly torn) written, commit never called
    "after_data_write",
    "after_data_fsync",
    "after_index_commit",
    "torn_publish",  # index committed, the row count's rewrite interrupted
    "after_header_rewrite",
)
COMMITTED_AT = {"after_index_commit", "torn_publish", "after_header_rewrite"}


class CommitProtocol(RuleBasedStateMachine):
    """Whatever happens, every reader sees exactly the rows committed through the index."""

    spec = SPEC
    storage = NPY

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="tiffsink-sm-"))
        self.dtype = np.dtype(self.spec.dtype)
        self.model = np.empty((0, *self.spec.row_shape), self.dtype)
        self.writer: DatasetWriter | None = self._open()

    def _open(self) -> DatasetWriter:
        return DatasetWriter(self.dir, self.spec, self.storage)

    def teardown(self) -> None:
        if self.writer is not None:  # None when a check failed between crash and reopen
            self.writer.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _rows(self, data: st.DataObject, k: int) -> np.ndarray:
        seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
        hi = int(np.iinfo(self.dtype).max) + 1
        rng = np.random.default_rng(seed)
        return rng.integers(0, hi, size=(k, *self.spec.row_shape), dtype=self.dtype)

    def _live(self) -> DatasetWriter:
        assert self.writer is not None
        return self.writer

    @rule(data=st.data(), k=st.integers(0, 5), n_failed=st.integers(0, 3))
    def append_and_commit(self, data: st.DataObject, k: int, n_failed: int) -> None:
        """Write k + n_failed rows, take back the failed ones as the pipeline does, commit."""
        w = self._live()
        base = w.committed
        pending = list(self._rows(data, k + n_failed))
        for r in pending:
            w.write_row(r)
        failed = data.draw(
            st.sets(st.integers(0, len(pending) - 1), min_size=n_failed, max_size=n_failed)
            if pending
            else st.just(set()),
            label="failed",
        )
        for i in sorted(failed, reverse=True):  # a gap closed by moving the last row into it
            last = len(pending) - 1
            if i != last:
                w.move_row(base + last, base + i)
                pending[i] = pending[last]
            pending.pop()
        recs = [record(base + i) for i in range(len(pending))]
        fails = [
            FailureRecord(f"/inbox/bad_{base}_{i}.tif", 1, 1, "corrupt", "x", 1.0) for i in failed
        ]
        w.commit(recs, fails)
        if w.cursor > w.committed:
            w.discard_pending()  # only holes are left past the batch: the pipeline cuts them
        if pending:
            self.model = np.concatenate([self.model, np.array(pending)])

    @rule(
        data=st.data(),
        k=st.integers(0, 5),
        point=st.sampled_from(CRASH_POINTS),
        torn=st.integers(0, 200),
    )
    def crash_during_commit(self, data: st.DataObject, k: int, point: str, torn: int) -> None:
        """Write a batch plus a torn row, die at `point`, reopen: old or new state, no mix."""
        w = self._live()
        rows = self._rows(data, k)
        recs = [record(w.write_row(r)) for r in rows]
        if torn:  # a write in flight when the process died: a prefix of one more row
            tear(w, torn)
        new = np.concatenate([self.model, rows])
        if point != "mid_write":
            stop_at = "after_index_commit" if point == "torn_publish" else point

            def hit(name: str) -> None:
                if name == stop_at:
                    raise _Crash(name)

            with mock.patch.object(faults, "crash_point", hit), pytest.raises(_Crash):
                w.commit(recs, [])
        if point == "torn_publish":
            tear_publish(w, len(new), data.draw(st.integers(0, 20), label="cut"))
        drop(w)
        self.writer = None

        # Before recovery: tiffsink's reader follows the index; a plain reader sees at
        # most one batch less (the published count lags, never leads).
        committed = point in COMMITTED_AT
        truth = new if committed else self.model
        with open_dataset(self.dir) as ds:
            if self.storage.format == "npy":
                np.testing.assert_array_equal(ds.images, truth)
            seen = np.asarray(ds.read(0, len(ds)))
            assert len(ds) in (len(self.model), len(truth))
            np.testing.assert_array_equal(seen, truth[: len(seen)])
        if point != "torn_publish" or self.storage.format == "zarr":
            plain = raw_rows(self.dir, self.storage)
            assert len(plain) in (len(self.model), len(truth)), "a plain reader saw a torn count"
            np.testing.assert_array_equal(plain, truth[: len(plain)])

        self.model = truth
        self.writer = self._open()
        left = leftover(self.dir, self.spec, self.storage, len(self.model))
        assert not left, f"recovery left uncommitted data: {left}"

    @rule()
    def close_and_reopen(self) -> None:
        """A clean close leaves a dataset that verifies with no writer and nothing spare."""
        self._live().close()
        rep = verify(self.dir)
        assert rep.ok, rep.problems
        assert not leftover(self.dir, self.spec, self.storage, len(self.model))
        self.writer = self._open()

    @invariant()
    def readers_see_exactly_the_committed_rows(self) -> None:
        plain = raw_rows(self.dir, self.storage)
        assert plain.shape == self.model.shape
        np.testing.assert_array_equal(plain, self.model)
        with open_dataset(self.dir) as ds:
            assert len(ds) == len(self.model)
            np.testing.assert_array_equal(np.asarray(ds.read(0, len(ds))), self.model)
            backwards = list(range(len(ds)))[::-1]  # a training batch, in its own order
            np.testing.assert_array_equal(ds.take(backwards), self.model[::-1])

    @invariant()
    def verify_is_ok(self) -> None:
        rep = verify(self.dir)
        assert rep.ok, rep.problems


_SM_SETTINGS = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _machine(name: str, spec: ImageSpec, storage: Storage) -> type:
    machine = type(name, (CommitProtocol,), {"spec": spec, "storage": storage})
    case = machine.TestCase
    case.settings = _SM_SETTINGS
    return case


TestCommitNpyGray = _machine("NpyGray", SPEC, NPY)
TestCommitNpyRGB = _machine("NpyRGB", SPEC_RGB, NPY)
TestCommitZarrGray = _machine("ZarrGray", SPEC, ZARR)
TestCommitZarrRGB = _machine("ZarrRGB", SPEC_RGB, ZARR)
TestCommitZarrZstd = _machine("ZarrZstd", SPEC, ZARR_ZSTD)


# -- readers during writes ---------------------------------------------------------------

READER = r"""
import json, sys, time
from pathlib import Path
import numpy as np
import zarr
from tiffsink import open_dataset

d, fmt = Path(sys.argv[1]), sys.argv[3]
stop, ready = d.parent / "stop", d.parent / "ready"
deadline = time.monotonic() + float(sys.argv[2])
MOD = np.iinfo(np.uint16).max

def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)

def check(arr, what):
    n = arr.shape[0]
    if n:
        want = ((np.arange(n) + 1) % MOD).astype(np.uint16)
        got = np.asarray(arr).reshape(n, -1)
        bad = np.nonzero((got != want[:, None]).any(axis=1))[0]
        if bad.size:
            fail(f"{what}: row {bad[0]} of {n} holds {got[bad[0]].tolist()}")

def plain():
    if fmt == "npy":
        return np.load(d / "images.npy", mmap_mode="r")
    return zarr.open_array(d / "images.zarr" / "0", mode="r")[:]

ds = open_dataset(d)
ready.touch()
counts, last_h, last_n, loops = set(), 0, 0, 0
while True:
    finished = stop.exists()  # checked first: the pass after it sees every commit
    try:
        a = plain()
    except Exception as e:
        fail(f"plain reader: {e!r}")
    h = a.shape[0]
    check(a, "plain reader")
    del a
    n = ds.refresh()
    check(ds.read(0, len(ds)), "open_dataset")
    if len(ds) != n:
        fail(f"refresh() returned {n} but len() is {len(ds)}")
    if h > n:
        fail(f"the published count says {h} rows, index committed only {n}")
    if h < last_h or n < last_n:
        fail(f"row count went backwards: published {last_h}->{h}, index {last_n}->{n}")
    last_h, last_n = h, n
    counts.add(n)
    loops += 1
    if finished:
        break
    if time.monotonic() > deadline:
        fail("no stop signal before the deadline")
print(json.dumps({"loops": loops, "counts": len(counts), "header": last_h, "index": last_n}))
"""


def numbered(row: int) -> np.ndarray:
    """A row whose every pixel says which row it is (row + 1, so a hole of zeros is wrong)."""
    return np.full(SPEC.row_shape, (row + 1) % np.iinfo(np.uint16).max, dtype=np.uint16)


@pytest.mark.parametrize("fmt", ["npy", "zarr", "zarr-zstd"])
def test_concurrent_reader_never_sees_an_uncommitted_or_unwritten_row(
    tmp_path: Path, fmt: str
) -> None:
    """A reader polling a plain reader and open_dataset during 150 commits sees only
    committed rows, never a count ahead of the index, never a fill-value row."""
    d = tmp_path / "ds"
    w = DatasetWriter(d, SPEC, STORAGES[fmt])
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(d), "60", STORAGES[fmt].format],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: (tmp_path / "ready").exists() or reader.poll() is not None,
            timeout_s=30,
            what="reader start",
        )
        assert reader.poll() is None, reader.communicate()
        garbage = np.full(SPEC.row_shape, 0xDEAD, dtype=np.uint16)
        total = 0
        for b in range(150):
            k = 1 + b % 3
            base = w.committed
            for _ in range(k):  # rows later taken back (a failed file)
                w.write_row(garbage)
            w.discard_pending()
            for i in range(k):
                w.write_row(numbered(base + i))
            w.write_row(garbage)  # and one more taken back, left past the batch
            w.commit([record(base + i) for i in range(k)], [])
            w.discard_pending()  # only that hole is left: the pipeline cuts it
            total += k
        (tmp_path / "stop").touch()
        out, err = reader.communicate(timeout=60)
    finally:
        w.close()
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert reader.returncode == 0, err
    summary = json.loads(out)
    assert summary["header"] == summary["index"] == total
    assert summary["counts"] >= 3, f"reader did not overlap the writer: {summary}"
