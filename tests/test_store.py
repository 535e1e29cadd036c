"""The npy dataset contract (docs/dataset.md): recovery, locking, spec, verify.

The format-independent specification (the commit state machine, the concurrent reader)
is in test_conformance.py.

A crash is modelled two ways: in-process, by raising out of a failpoint and dropping the
writer without its close() (the page cache survives, as it does for kill -9), and with real
processes that SIGKILL themselves at a TIFFSINK_FAULTS crash point.
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest

from tiffsink import open_dataset
from tiffsink.config import ImageSpec, Storage
from tiffsink.dataset import index, lock
from tiffsink.dataset.formats.npy import header as npyhead
from tiffsink.dataset.layout import IMAGES, INDEX, Layout
from tiffsink.dataset.records import FailureRecord, RowRecord
from tiffsink.dataset.verify import verify
from tiffsink.dataset.writer import DatasetWriter
from tiffsink.errors import DatasetError, DatasetLockedError, SpecMismatchError
from tiffsink.testing import faults

from conftest import run_cli, wait_for

SPEC = ImageSpec(height=3, width=4, dtype="uint16")
SPEC_RGB = ImageSpec(height=3, width=4, channels=3, dtype="uint8")
HEADER = npyhead.HEADER_BYTES


# -- helpers ---------------------------------------------------------------------------


class _Crash(BaseException):
    """Stands for SIGKILL at a failpoint: nothing after it runs, not even close()."""


def record(row: int, source: str | None = None, mtime_ns: int = 1, page: int = 0) -> RowRecord:
    src = source if source is not None else f"/inbox/frame_{row:06d}.tif"
    return RowRecord(row, src, page, 100, mtime_ns, "0" * 32, 3, 4, "uint16", 1, 1.0)


def numbered(spec: ImageSpec, row: int) -> np.ndarray:
    """A row whose every pixel says which row it is (row + 1, so a hole of zeros is wrong)."""
    return np.full(spec.row_shape, (row + 1) % np.iinfo(spec.dtype).max, dtype=spec.dtype)


def commit_rows(w: DatasetWriter, rows: list[np.ndarray]) -> list[RowRecord]:
    recs = [record(w.write_row(r.tobytes())) for r in rows]
    w.commit(recs, [])
    return recs


def drop(w: DatasetWriter) -> None:
    """Abandon a writer as kill -9 would: its descriptors go, none of close()'s cleanup runs."""
    w.conn.close()
    w.store.close()
    os.close(w._lock_fd)


def file_rows(directory: Path) -> np.ndarray:
    return np.array(np.load(directory / IMAGES, mmap_mode="r"))


def header_count(directory: Path) -> int:
    with (directory / IMAGES).open("rb") as fh:
        return npyhead.parse(fh.read(HEADER))[0]


def set_header_count(directory: Path, spec: ImageSpec, n: int) -> None:
    fd = os.open(directory / IMAGES, os.O_RDWR)
    try:
        npyhead.write_count(fd, n, npyhead.count_offset(spec.row_shape, spec.dtype))
    finally:
        os.close(fd)


def exact_size(spec: ImageSpec, n: int) -> int:
    return HEADER + n * spec.row_bytes


def assert_dataset_equals(directory: Path, model: np.ndarray) -> None:
    """np.load and open_dataset both show exactly the model's rows."""
    arr = np.load(directory / IMAGES, mmap_mode="r")
    assert arr.shape == model.shape
    assert arr.dtype == model.dtype
    np.testing.assert_array_equal(arr, model)
    del arr
    with open_dataset(directory) as ds:
        assert len(ds) == len(model)
        assert ds.images.shape == model.shape
        np.testing.assert_array_equal(ds.images, model)


def baseline(directory: Path, spec: ImageSpec = SPEC, n: int = 2) -> np.ndarray:
    """A closed dataset with `n` committed, numbered rows; returns them."""
    rows = [numbered(spec, i) for i in range(n)]
    with DatasetWriter(directory, spec) as w:
        commit_rows(w, rows)
    return np.array(rows).reshape(n, *spec.row_shape)


def python(script: str, *args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


# -- exactly once, locking, spec -----------------------------------------------------------


def test_same_file_version_and_page_cannot_get_a_second_row(tmp_path: Path) -> None:
    """A second row for the same (source, size, mtime_ns, page) fails and changes nothing."""
    src = "/inbox/a.tif"
    with DatasetWriter(tmp_path, SPEC) as w:
        w.write_row(numbered(SPEC, 0).tobytes())
        w.commit([record(0, src)], [])
        w.write_row(numbered(SPEC, 1).tobytes())
        fail = FailureRecord("/inbox/other.tif", 1, 1, "corrupt", "x", 1.0)
        with pytest.raises(sqlite3.IntegrityError):
            w.commit([record(1, src)], [fail])
        assert w.committed == 1
    assert_dataset_equals(tmp_path, numbered(SPEC, 0)[None])
    with open_dataset(tmp_path) as ds:
        assert ds.failures() == [], "the failed commit's failure records were committed"
    assert verify(tmp_path).ok


def test_a_new_mtime_is_a_new_version(tmp_path: Path) -> None:
    """The same path rewritten (new mtime_ns) gets its own row."""
    src = "/inbox/a.tif"
    with DatasetWriter(tmp_path, SPEC) as w:
        for row, mtime in enumerate((1, 2)):
            w.write_row(numbered(SPEC, row).tobytes())
            w.commit([record(row, src, mtime_ns=mtime)], [])
    with open_dataset(tmp_path) as ds:
        assert [(r.row, r.mtime_ns) for r in ds.rows_for(src)] == [(0, 1), (1, 2)]
        assert ds.record(1).mtime_ns == 2


def test_a_multi_page_file_gets_one_row_per_page(tmp_path: Path) -> None:
    """Pages of one file version are distinct keys."""
    src = "/inbox/stack.tif"
    with DatasetWriter(tmp_path, SPEC) as w:
        for p in range(3):
            w.write_row(numbered(SPEC, p).tobytes())
        w.commit([record(p, src, page=p) for p in range(3)], [])
    with open_dataset(tmp_path) as ds:
        assert [r.page for r in ds.rows_for(src)] == [0, 1, 2]


HOLDER = r"""
import sys, time
from pathlib import Path
from tiffsink.config import ImageSpec, Storage
from tiffsink.dataset.writer import DatasetWriter
w = DatasetWriter(sys.argv[1], ImageSpec(height=3, width=4, dtype="uint16"))
Path(sys.argv[2]).touch()
time.sleep(300)  # hold the lock until the test kills us
"""


def test_second_writer_is_refused_naming_the_holder_pid_until_the_holder_dies(
    tmp_path: Path,
) -> None:
    """DatasetLockedError names the holding process; SIGKILL of the holder frees the lock."""
    d, flag = tmp_path / "ds", tmp_path / "holding"
    holder = python(HOLDER, str(d), str(flag))
    try:
        wait_for(lambda: flag.exists() or holder.poll() is not None, what="holder lock")
        assert holder.poll() is None, holder.communicate()
        with pytest.raises(DatasetLockedError) as ei:
            DatasetWriter(d, SPEC)
        assert f"PID {holder.pid}" in str(ei.value)
        assert ei.value.pid == holder.pid
        assert lock.holder(Layout(d)) == holder.pid
        assert verify(d).ok
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    assert holder.returncode == -signal.SIGKILL
    assert lock.holder(Layout(d)) is None
    with DatasetWriter(d, SPEC) as w:
        assert w.committed == 0


def test_different_image_spec_is_refused_naming_each_differing_key(tmp_path: Path) -> None:
    """SpecMismatchError lists image.width and image.dtype, and only those."""
    baseline(tmp_path)
    other = ImageSpec(height=3, width=5, dtype="uint8")
    with pytest.raises(SpecMismatchError) as ei:
        DatasetWriter(tmp_path, other)
    msg = str(ei.value)
    assert "image.width" in msg
    assert "image.dtype" in msg
    assert "image.height" not in msg
    assert set(ei.value.diffs) == {"image.width", "image.dtype"}
    with DatasetWriter(tmp_path, SPEC) as w:  # the refused open released the lock
        assert w.committed == 2


def test_max_pixels_is_not_part_of_the_spec(tmp_path: Path) -> None:
    """Changing the decompression-bomb limit does not make a dataset incompatible."""
    baseline(tmp_path)
    with DatasetWriter(tmp_path, ImageSpec(height=3, width=4, max_pixels=10)) as w:
        assert w.committed == 2


def test_max_page_bytes_is_not_part_of_the_spec(tmp_path: Path) -> None:
    """The decoded-bytes limit is a safety limit too: changing it keeps the dataset usable."""
    baseline(tmp_path)
    with DatasetWriter(tmp_path, ImageSpec(height=3, width=4, max_page_bytes=10)) as w:
        assert w.committed == 2


def test_a_refused_open_leaks_no_file_descriptors(tmp_path: Path) -> None:
    """A writer that fails to open (spec mismatch) closes everything it opened."""
    baseline(tmp_path)
    other = ImageSpec(height=3, width=5)
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(SpecMismatchError):
            DatasetWriter(tmp_path, other)
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) == before


# -- failpoints with real processes --------------------------------------------------------

KILLED = r"""
import sys
import numpy as np
from tiffsink.config import ImageSpec, Storage
from tiffsink.dataset.records import RowRecord
from tiffsink.dataset.writer import DatasetWriter
spec = ImageSpec(height=3, width=4, dtype="uint16")
w = DatasetWriter(sys.argv[1], spec)
base, k = w.committed, int(sys.argv[2])
recs = []
for i in range(k):
    w.write_row(np.full(spec.row_shape, base + i + 1, np.uint16).tobytes())
    recs.append(RowRecord(base + i, f"/inbox/frame_{base + i:06d}.tif", 0, 100, 1, "0" * 32,
                          3, 4, "uint16", 1, 1.0))
w.commit(recs, [])
print("survived the failpoint")
"""


@pytest.mark.parametrize(
    ("point", "committed"),
    [
        ("after_data_write", False),
        ("after_data_fsync", False),
        ("after_index_commit", True),
        ("after_header_rewrite", True),
    ],
)
def test_sigkill_at_failpoint_leaves_old_or_new_state(
    tmp_path: Path, point: str, committed: bool
) -> None:
    """kill -9 at each commit step: rows present iff the index committed; recovery is clean."""
    old = baseline(tmp_path, n=2)
    env = {**os.environ, **faults.spec(crash_at=point)}
    proc = python(KILLED, str(tmp_path), "3", env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (out, err)
    new = np.array([numbered(SPEC, i) for i in range(5)])
    want = new if committed else old

    with open_dataset(tmp_path) as ds:  # before recovery, the index is the truth
        np.testing.assert_array_equal(ds.images, want)
    np.testing.assert_array_equal(
        file_rows(tmp_path), new if point == "after_header_rewrite" else old
    )
    before = verify(tmp_path)
    if point == "after_header_rewrite":
        assert before.ok, before.problems
    else:
        assert not before.ok  # no writer holds it: trailing bytes / lagging header are problems

    DatasetWriter(tmp_path, SPEC).close()  # recovery
    assert_dataset_equals(tmp_path, want)
    assert (tmp_path / IMAGES).stat().st_size == exact_size(SPEC, len(want))
    assert header_count(tmp_path) == len(want)
    rep = verify(tmp_path)
    assert rep.ok, rep.problems


# -- recovery ------------------------------------------------------------------------------


def test_recovery_cuts_trailing_bytes_past_the_committed_rows(tmp_path: Path) -> None:
    """Garbage after the last committed row is removed on open."""
    rows = baseline(tmp_path)
    with (tmp_path / IMAGES).open("ab") as fh:
        fh.write(b"\xff" * (SPEC.row_bytes + 7))
    assert not verify(tmp_path).ok
    with DatasetWriter(tmp_path, SPEC) as w:
        assert w.committed == 2
        assert (tmp_path / IMAGES).stat().st_size == exact_size(SPEC, 2)
    assert_dataset_equals(tmp_path, rows)
    assert verify(tmp_path).ok


def test_recovery_rewrites_a_header_that_lags_the_index(tmp_path: Path) -> None:
    """A header count behind the index (crash before the rewrite) is set to the index's N."""
    rows = baseline(tmp_path, n=3)
    set_header_count(tmp_path, SPEC, 1)
    assert np.load(tmp_path / IMAGES, mmap_mode="r").shape[0] == 1
    DatasetWriter(tmp_path, SPEC).close()
    assert header_count(tmp_path) == 3
    assert_dataset_equals(tmp_path, rows)


def test_recovery_refuses_a_file_shorter_than_the_committed_rows(tmp_path: Path) -> None:
    """Missing committed data is an error naming it, never silently re-zeroed."""
    baseline(tmp_path, n=3)
    os.truncate(tmp_path / IMAGES, exact_size(SPEC, 2) + 5)
    with pytest.raises(DatasetError, match="committed data is missing"):
        DatasetWriter(tmp_path, SPEC)
    assert lock.holder(Layout(tmp_path)) is None
    assert os.path.getsize(tmp_path / IMAGES) == exact_size(SPEC, 2) + 5, "file was modified"


def test_recovery_refuses_rows_with_a_missing_index(tmp_path: Path) -> None:
    """images.npy with rows but no index.sqlite is not guessed at."""
    baseline(tmp_path)
    (tmp_path / INDEX).unlink()
    with pytest.raises(DatasetError, match="index is missing"):
        DatasetWriter(tmp_path, SPEC)


def test_a_crash_while_creating_the_index_leaves_an_openable_dataset(tmp_path: Path) -> None:
    """Dying between creating index.sqlite and committing its meta is recoverable."""

    def create_then_die(conn: sqlite3.Connection, meta: dict[str, Any]) -> None:
        conn.executescript(index.SCHEMA)
        raise _Crash("before the meta transaction")

    with mock.patch.object(index, "create", create_then_die), pytest.raises(_Crash):
        DatasetWriter(tmp_path, SPEC)
    gc.collect()
    with DatasetWriter(tmp_path, SPEC) as w:
        commit_rows(w, [numbered(SPEC, 0)])
    assert_dataset_equals(tmp_path, numbered(SPEC, 0)[None])


def test_close_cuts_rows_taken_back_before_an_empty_commit(tmp_path: Path) -> None:
    """Rows written then taken back (a failed file) do not outlive a clean close."""
    with DatasetWriter(tmp_path, SPEC) as w:
        commit_rows(w, [numbered(SPEC, 0)])
        w.write_row(numbered(SPEC, 1).tobytes())  # a hole: the failed file's row, left pending
        w.commit([], [FailureRecord("/inbox/bad.tif", 1, 1, "corrupt", "x", 1.0)])
    assert (tmp_path / IMAGES).stat().st_size == exact_size(SPEC, 1)
    rep = verify(tmp_path)
    assert rep.ok, rep.problems


# -- an fsync error poisons the writer -----------------------------------------------------


def test_fsync_error_is_not_retried_and_poisons_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EIO from fdatasync: commit fails, the writer refuses more, reopening recovers."""
    good = baseline(tmp_path)
    w = DatasetWriter(tmp_path, SPEC)
    try:
        w.write_row(numbered(SPEC, 2).tobytes())

        def eio(fd: int) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        monkeypatch.setattr(os, "fdatasync", eio)
        with pytest.raises(DatasetError) as ei:
            w.commit([record(2)], [])
        assert "EIO" in str(ei.value)
        assert "not retried" in str(ei.value)
        monkeypatch.undo()
        with pytest.raises(DatasetError, match="I/O error"):
            w.write_row(numbered(SPEC, 3).tobytes())
        with pytest.raises(DatasetError):
            w.commit([record(2)], [])
        assert_dataset_equals(tmp_path, good)
    finally:
        w.close()
    with DatasetWriter(tmp_path, SPEC) as w2:
        assert w2.committed == 2
    assert_dataset_equals(tmp_path, good)
    assert (tmp_path / IMAGES).stat().st_size == exact_size(SPEC, 2)
    assert verify(tmp_path).ok


# -- tiffsink verify -----------------------------------------------------------------------


def verify_cli(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("tiffsink")
    if script.exists():
        return subprocess.run(
            [str(script), "verify", *args], capture_output=True, text=True, timeout=60
        )
    return run_cli("verify", *args, timeout=60)


def test_verify_cli_passes_a_good_dataset(tmp_path: Path) -> None:
    """`tiffsink verify` exits 0 and says consistent."""
    baseline(tmp_path, n=3)
    r = verify_cli(str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "consistent" in r.stdout
    assert "3 committed rows" in r.stdout


def test_verify_cli_reports_a_truncated_file(tmp_path: Path) -> None:
    """A file shorter than the committed rows is a problem, exit non-zero."""
    baseline(tmp_path, n=3)
    os.truncate(tmp_path / IMAGES, exact_size(SPEC, 2))
    r = verify_cli(str(tmp_path))
    assert r.returncode != 0
    assert "PROBLEM" in r.stdout
    assert "3 committed rows need" in r.stdout


def test_verify_cli_reports_a_header_claiming_more_rows_than_the_index(tmp_path: Path) -> None:
    """A header ahead of the index is a problem."""
    baseline(tmp_path, n=2)
    set_header_count(tmp_path, SPEC, 5)
    r = verify_cli(str(tmp_path))
    assert r.returncode != 0
    assert "header claims 5 rows, index committed 2" in r.stdout


@pytest.mark.parametrize("damage", ["lagging_header", "trailing_bytes", "header_ahead"])
def test_verify_cli_repair_fixes_what_recovery_can(tmp_path: Path, damage: str) -> None:
    """`--repair` runs recovery: a wrong header count or trailing bytes are fixed."""
    rows = baseline(tmp_path, n=2)
    if damage == "lagging_header":
        set_header_count(tmp_path, SPEC, 0)
    elif damage == "header_ahead":
        set_header_count(tmp_path, SPEC, 9)
    else:
        with (tmp_path / IMAGES).open("ab") as fh:
            fh.write(b"\x01" * 100)
    assert verify_cli(str(tmp_path)).returncode != 0
    r = verify_cli(str(tmp_path), "--repair")
    assert r.returncode == 0, r.stdout + r.stderr
    assert verify_cli(str(tmp_path)).returncode == 0
    assert_dataset_equals(tmp_path, rows)


def test_verify_cli_repair_cannot_invent_missing_data(tmp_path: Path) -> None:
    """`--repair` on a truncated file reports the failure and exits non-zero."""
    baseline(tmp_path, n=3)
    os.truncate(tmp_path / IMAGES, exact_size(SPEC, 1))
    r = verify_cli(str(tmp_path), "--repair")
    assert r.returncode != 0
    assert "committed data is missing" in r.stdout


def test_verify_notes_rather_than_flags_a_commit_in_progress(tmp_path: Path) -> None:
    """With a writer holding the lock, pending bytes are a note, not a problem."""
    with DatasetWriter(tmp_path, SPEC) as w:
        commit_rows(w, [numbered(SPEC, 0)])
        w.write_row(numbered(SPEC, 1).tobytes())
        rep = verify(tmp_path)
        assert rep.ok, rep.problems
        assert any("past the committed rows" in n for n in rep.notes)
    assert verify(tmp_path).ok


def test_a_different_format_is_refused_naming_the_key(tmp_path: Path) -> None:
    """An npy dataset opened with format = "zarr" is refused, naming dataset.format."""
    baseline(tmp_path)
    with pytest.raises(SpecMismatchError, match=r"dataset\.format: dataset has 'npy'"):
        DatasetWriter(tmp_path, SPEC, Storage("zarr"))
    assert not (tmp_path / "images.zarr").exists()
