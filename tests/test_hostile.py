"""Hostile inputs through the real daemon: every one ends as a recorded failure with the
right reason (or is ignored when it is not a file), the daemon neither crashes nor hangs,
and a valid file written afterwards is still ingested, which proves nothing was blocked.

Most tests share one running daemon (a module fixture) to keep the file fast; each uses
its own file names and waits for its own outcome. A bounded mutation fuzz checks that the
decoder answers rows or DecodeError for anything, and an inotify overflow test checks
that lost events are made good by the reconcile scan.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import tifffile
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiffsink import open_dataset
from tiffsink.config import ImageSpec
from tiffsink.dataset.records import FailureRecord, RowRecord
from tiffsink.decode import decode_file
from tiffsink.errors import DecodeError, TiffsinkError

import corpus
import daemon_harness
from conftest import wait_for
from daemon_harness import DaemonProc, source_array, tiff_bytes

SPEC = ImageSpec(height=32, width=48, dtype="uint16")  # small_sections' [image]
REASONS = frozenset(  # docs/dataset.md, the failures table
    ("empty", "not_tiff", "truncated", "corrupt", "too_large", "unsupported_layout",
     "decoder_error", "decoder_crash", "timeout", "out_of_memory", "changed_during_read",
     "vanished", "not_regular", "symlink_outside_root", "dangling_symlink", "unreadable")
)  # fmt: skip
QUEUED_EVENTS = Path("/proc/sys/fs/inotify/max_queued_events")


# -- helpers ---------------------------------------------------------------------------
def valid_bytes(seed: int, shape: tuple[int, int] = (16, 24)) -> bytes:
    return tiff_bytes(source_array(seed, shape))


def outcome(d: DaemonProc, path: Path | str) -> tuple[list[RowRecord], list[FailureRecord]]:
    """Committed rows and recorded failures of one source path."""
    try:
        ds = open_dataset(d.dataset)
    except TiffsinkError:
        return [], []
    with ds:
        return ds.rows_for(path), [f for f in ds.failures() if f.source == str(path)]


def alive(d: DaemonProc) -> None:
    assert d.proc is not None and d.proc.poll() is None, (
        "daemon died:\n" + d.log_path.read_text(errors="replace")[-3000:]
    )


def wait_outcome(
    d: DaemonProc, path: Path | str, timeout: float = 60
) -> tuple[list[RowRecord], list[FailureRecord]]:
    def done() -> tuple[list[RowRecord], list[FailureRecord]] | None:
        alive(d)
        rows, fails = outcome(d, path)
        return (rows, fails) if rows or fails else None

    got = wait_for(done, timeout, f"a row or a failure for {path!r}")
    assert got is not None
    return got


def wait_failure(d: DaemonProc, path: Path | str, timeout: float = 60) -> FailureRecord:
    """The one failure record of `path` (and no row)."""
    rows, fails = wait_outcome(d, path, timeout)
    assert rows == [], f"{path!r} has rows: {rows}"
    assert len(fails) == 1, fails
    return fails[0]


def still_working(d: DaemonProc, tag: str) -> None:
    """A valid file written now is ingested, and no daemon thread died meanwhile."""
    p = d.inbox / f"ok_{tag}.tif"
    p.write_bytes(valid_bytes(len(tag)))
    rows, fails = wait_outcome(d, p)
    assert len(rows) == 1 and fails == [], (rows, fails)
    alive(d)
    assert "Traceback" not in d.log_path.read_text(errors="replace")


def file_failed_events(d: DaemonProc, path: Path | str) -> list[dict[str, Any]]:
    return [e for e in d.events("file.failed") if e.get("path") == str(path)]


def shutdown(d: DaemonProc) -> None:
    """SIGTERM and expect exit 0; a daemon that hangs dumps its threads' stacks first."""
    if d.proc is None:
        return
    try:
        rc = d.stop(60)
    except subprocess.TimeoutExpired:
        d.proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: tracebacks into the log
        with contextlib.suppress(subprocess.TimeoutExpired):
            d.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(d.proc.pid, signal.SIGKILL)
        d.proc.wait(30)
        raise AssertionError(
            "daemon did not stop within 60 s of SIGTERM:\n"
            + d.log_path.read_text(errors="replace")[-6000:]
        ) from None
    assert rc == 0, d.log_path.read_text(errors="replace")[-3000:]


def module_daemon(tmp: Path, **sections: dict[str, Any]) -> DaemonProc:
    """A daemon that outlives one test: kept from the per-test reaper, stopped by its
    fixture, and able to dump its stacks should it hang on stop."""
    d = DaemonProc(tmp, env={"PYTHONFAULTHANDLER": "1"}, **sections)
    live = getattr(daemon_harness, "LIVE", None)
    if live is not None and d in live:
        live.remove(d)
    return d


# -- the shared daemons ------------------------------------------------------------------
@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    """One daemon for the hostile inputs, without periodic rescans, so a file created
    while it runs is seen only through its events; a FIFO, two bad symlinks and a folder
    named like a TIFF are there before it starts, so the start scan finds those."""
    tmp = tmp_path_factory.mktemp("hostile")
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "real.tif").write_bytes(valid_bytes(1))
    d = module_daemon(tmp)
    os.symlink(outside / "real.tif", d.inbox / "pre_outside.tif")
    os.symlink(tmp / "nowhere.tif", d.inbox / "pre_dangling.tif")
    os.mkfifo(d.inbox / "pre_fifo.tif")
    (d.inbox / "pre_folder.tif").mkdir()
    (d.inbox / "pre_folder.tif" / "inner.tif").write_bytes(valid_bytes(2))
    d.start()
    try:
        yield d
    finally:
        shutdown(d)


@pytest.fixture(scope="module")
def slow_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    """Batches wait 3 s, so a file can change or vanish after its event, before its decode."""
    d = module_daemon(tmp_path_factory.mktemp("slow"), batch={"max_files": 64, "max_wait_ms": 3000})
    d.start()
    try:
        yield d
    finally:
        shutdown(d)


# -- broken bytes --------------------------------------------------------------------------
def test_empty_file_is_recorded_as_empty(daemon: DaemonProc) -> None:
    """A zero-byte .tif becomes an `empty` failure."""
    p = corpus.empty(daemon.inbox / "zero.tif")
    f = wait_failure(daemon, p)
    assert (f.reason, f.detail, f.size) == ("empty", "file has 0 bytes", 0)
    still_working(daemon, "empty")


def test_truncated_files_fail_as_truncated_naming_the_size(daemon: DaemonProc) -> None:
    """Valid files cut at random offsets are `truncated`; the detail names the cut size."""
    rng = np.random.default_rng(20240611)
    cuts: dict[Path, tuple[int, int]] = {}  # path -> (cut, full size)
    for kind in ("uint16_gray", "lzw"):
        full = daemon.tmp / f"{kind}_full.tif"
        corpus.KINDS[kind](full)
        data = full.read_bytes()
        for at in sorted({1, 3, 6, 9, 100, *rng.integers(200, len(data), 5).tolist()}):
            p = daemon.inbox / f"cut_{kind}_{at}.tif"
            p.write_bytes(data[:at])
            cuts[p] = (at, len(data))
    for p, (at, full_size) in cuts.items():
        f = wait_failure(daemon, p)
        assert f.reason == "truncated", (p.name, f)
        # "3 bytes, shorter than a TIFF header" / "needs bytes 8..10, file has 9" / "... file 4000"
        assert str(at) in f.detail, (p.name, f.detail)
        if at >= 200:  # past the IFD: the detail also says where page 0's data ends
            assert f"data ends at {full_size}" in f.detail, (p.name, f.detail)
    still_working(daemon, "truncated")


def test_random_bytes_are_not_tiff(daemon: DaemonProc) -> None:
    """4 KiB of random bytes named .tif is `not_tiff` (bad magic)."""
    p = corpus.random_bytes(daemon.inbox / "noise.tif")
    f = wait_failure(daemon, p)
    assert f.reason == "not_tiff" and "bad magic" in f.detail, f
    still_working(daemon, "random")


def test_png_and_jpeg_renamed_tif_are_not_tiff(daemon: DaemonProc) -> None:
    """A PNG and a JPEG renamed .tif are `not_tiff`, the detail showing their magic."""
    png = corpus.png_renamed(daemon.inbox / "really_png.tif")
    ok, jpg = cv2.imencode(".jpg", corpus.gray(np.uint8, 51))
    assert ok
    jpeg = daemon.inbox / "really_jpeg.tif"
    jpeg.write_bytes(jpg.tobytes())
    for p, magic in ((png, "PNG"), (jpeg, "\\xff\\xd8\\xff")):
        f = wait_failure(daemon, p)
        assert f.reason == "not_tiff" and magic in f.detail, f
    still_working(daemon, "renamed")


def test_decompression_bomb_header_is_too_large_without_decoding(daemon: DaemonProc) -> None:
    """A 100000x100000 header is refused as `too_large` at once, with no worker restart."""
    p = corpus.huge_header(daemon.inbox / "bomb.tif", side=100_000)
    f = wait_failure(daemon, p, timeout=20)
    assert f.reason == "too_large" and "10000000000 pixels" in f.detail, f
    assert [e for e in daemon.events("worker.restarted") if e.get("path") == str(p)] == []
    still_working(daemon, "bomb")


def test_ifd_pointing_to_itself_never_hangs(daemon: DaemonProc) -> None:
    """An IFD whose next-IFD offset is itself ends as one row or one failure, quickly."""
    p = corpus.self_loop(daemon.inbox / "loop.tif")
    rows, fails = wait_outcome(daemon, p, timeout=30)
    assert (len(rows), len(fails)) in ((1, 0), (0, 1)), (rows, fails)
    if fails:
        assert fails[0].reason == "corrupt", fails
    try:  # every page, the way a pages = "all" dataset would read it
        assert len(decode_file(p, ImageSpec(height=32, width=48, pages="all"))) == 1
    except DecodeError as e:
        assert e.reason == "corrupt", e
    still_working(daemon, "loop")


# -- things that are not regular files -----------------------------------------------------
def test_fifo_is_not_regular_and_blocks_nothing(daemon: DaemonProc) -> None:
    """A FIFO named x.tif is `not_regular` and never opened; a file after it is ingested."""
    fifo = daemon.inbox / "x.tif"
    os.mkfifo(fifo)
    after = daemon.inbox / "after_fifo.tif"
    after.write_bytes(valid_bytes(3))
    f = wait_failure(daemon, fifo)
    assert (f.reason, f.detail) == ("not_regular", "a FIFO"), f
    rows, fails = wait_outcome(daemon, after)
    assert len(rows) == 1 and fails == []
    still_working(daemon, "fifo")
    assert len(file_failed_events(daemon, fifo)) == 1


def test_fifo_present_at_start_is_not_regular(daemon: DaemonProc) -> None:
    """A FIFO the start scan finds is `not_regular` too."""
    p = daemon.inbox / "pre_fifo.tif"
    f = wait_failure(daemon, p)
    assert (f.reason, f.detail) == ("not_regular", "a FIFO"), f
    assert len(file_failed_events(daemon, p)) == 1


def test_folder_named_like_a_tiff_is_ignored_but_its_files_ingested(daemon: DaemonProc) -> None:
    """A folder y.tif is no failure and no row; a valid TIFF inside it is ingested."""
    folder = daemon.inbox / "y.tif"
    folder.mkdir()
    inner = folder / "inner.tif"
    inner.write_bytes(valid_bytes(4))
    rows, fails = wait_outcome(daemon, inner)
    assert len(rows) == 1 and fails == []
    pre = daemon.inbox / "pre_folder.tif"
    rows, fails = wait_outcome(daemon, pre / "inner.tif")
    assert len(rows) == 1 and fails == []
    still_working(daemon, "folder")
    for f in (folder, pre):
        assert outcome(daemon, f) == ([], []), f


def test_symlink_out_of_root_is_refused(daemon: DaemonProc) -> None:
    """Symlinks to a file outside the root, found by the start scan or by their create
    event, are refused once each; the target is not ingested."""
    target = daemon.tmp / "outside" / "real.tif"
    live = daemon.inbox / "live_outside.tif"
    os.symlink(target, live)
    for p in (daemon.inbox / "pre_outside.tif", live):
        f = wait_failure(daemon, p)
        assert f.reason == "symlink_outside_root", f
        assert os.path.realpath(target) in f.detail, f
    assert outcome(daemon, target) == ([], [])
    still_working(daemon, "outside")
    for p in (daemon.inbox / "pre_outside.tif", live):
        assert len(file_failed_events(daemon, p)) == 1, p


def test_dangling_symlink_is_recorded(daemon: DaemonProc) -> None:
    """Symlinks to nothing, found by the start scan or by their create event, are one
    `dangling_symlink` failure each."""
    live = daemon.inbox / "live_dangling.tif"
    os.symlink(daemon.tmp / "gone.tif", live)
    for p, target in ((daemon.inbox / "pre_dangling.tif", "nowhere.tif"), (live, "gone.tif")):
        f = wait_failure(daemon, p)
        assert f.reason == "dangling_symlink" and target in f.detail, f
    still_working(daemon, "dangling")
    for p in (daemon.inbox / "pre_dangling.tif", live):
        assert len(file_failed_events(daemon, p)) == 1, p


def test_symlink_loop_is_dangling(daemon: DaemonProc) -> None:
    """Two symlinks pointing at each other are `dangling_symlink` (a loop), not a hang."""
    a, b = daemon.inbox / "ring_a.tif", daemon.inbox / "ring_b.tif"
    os.symlink(b, a)
    os.symlink(a, b)
    for p in (a, b):
        f = wait_failure(daemon, p)
        assert f.reason == "dangling_symlink", f
    still_working(daemon, "ring")


def test_refused_symlink_is_not_retried_by_rescans(tmp_path: Path) -> None:
    """A recorded failure is not tried again by later rescans while the file is unchanged."""
    d = DaemonProc(tmp_path, watch={"rescan_interval_s": 1}).start()
    p = d.inbox / "retry_dangling.tif"
    os.symlink(tmp_path / "never.tif", p)
    wait_failure(d, p)
    scans = len(d.events("scan.done"))
    wait_for(lambda: len(d.events("scan.done")) >= scans + 2, 30, "two more rescans")
    still_working(d, "retry")  # commits anything those rescans queued before it
    assert d.stop() == 0
    assert len(file_failed_events(d, p)) == 1, file_failed_events(d, p)


# -- names -------------------------------------------------------------------------------------
def test_awkward_names_are_ingested_under_their_exact_path(daemon: DaemonProc) -> None:
    """Spaces, unicode and a newline in a name: one row each, source is the exact path."""
    names = ["with  two spaces .tif", "zelle ü µm 細胞.tif", "new\nline.tif"]
    paths = [daemon.inbox / n for n in names]
    for i, p in enumerate(paths):
        p.write_bytes(valid_bytes(10 + i))
    for p in paths:
        rows, fails = wait_outcome(daemon, p)
        assert [r.source for r in rows] == [str(p)] and fails == [], (rows, fails)
    assert set(map(str, paths)) <= set(daemon.rows())
    still_working(daemon, "names")


def test_name_that_is_not_utf8_is_skipped_and_logged(daemon: DaemonProc) -> None:
    """A non-UTF-8 name cannot be stored: logged once, skipped, the daemon keeps going."""
    raw = os.fsencode(daemon.inbox) + b"/latin1_caf\xe9.tif"
    with open(raw, "wb") as fh:
        fh.write(valid_bytes(20))
    shown = f"{daemon.inbox}/latin1_caf\\xe9.tif"

    def logged() -> list[dict[str, Any]]:
        return [e for e in daemon.events("file.unsupported_name") if e.get("path") == shown]

    wait_for(logged, 30, "file.unsupported_name")
    still_working(daemon, "latin1")
    assert len(logged()) == 1  # its create, modify and close events: one warning
    with open_dataset(daemon.dataset) as ds:  # the index cannot even be asked for that name
        sources = [ds.record(r).source for r in range(len(ds))] + [f.source for f in ds.failures()]
    assert [s for s in sources if "latin1_caf" in s] == []


# -- files that change under the daemon ------------------------------------------------------
def test_deleted_before_decode_is_nothing_or_vanished(slow_daemon: DaemonProc) -> None:
    """Files deleted right away or after their event leave no row, at most `vanished`."""
    d = slow_daemon
    now = [d.inbox / f"gone_now_{i}.tif" for i in range(4)]
    for i, p in enumerate(now):
        p.write_bytes(valid_bytes(30 + i))
        p.unlink()
    late = [d.inbox / f"gone_late_{i}.tif" for i in range(4)]
    for i, p in enumerate(late):
        p.write_bytes(valid_bytes(40 + i))
    time.sleep(0.5)  # the scenario: deleted after the daemon saw them, before the 3 s batch
    for p in late:
        p.unlink()
    still_working(d, "vanish")  # same batch as the late ones: committed together
    got = {p.name: outcome(d, p) for p in now + late}
    for name, (rows, fails) in got.items():
        assert rows == [], name
        assert [f.reason for f in fails] in ([], ["vanished"]), (name, fails)
    assert any(got[p.name][1] for p in late), "no deletion happened between event and decode"


def test_rewritten_before_decode_ingests_final_version_once(slow_daemon: DaemonProc) -> None:
    """A file rewritten after its event and before its decode: one row, the final version."""
    d = slow_daemon
    p = d.inbox / "rewritten.tif"
    p.write_bytes(valid_bytes(50, (20, 30)))
    time.sleep(0.5)  # the scenario: the daemon has seen version 1; its batch waits 3 s
    final = valid_bytes(51, (24, 40))
    p.write_bytes(final)
    final_mtime = p.stat().st_mtime_ns
    still_working(d, "rewrite")  # in the same batch as the rewritten file, or a later one
    rows, fails = outcome(d, p)
    assert fails == [] and len(rows) == 1, (rows, fails)
    r = rows[0]
    assert (r.size, r.mtime_ns, r.src_height, r.src_width) == (len(final), final_mtime, 24, 40)
    assert r.content_hash == xxhash.xxh3_128(final).hexdigest()
    with open_dataset(d.dataset) as ds:
        np.testing.assert_array_equal(ds.images[r.row], decode_file(p, SPEC)[0][1])


# -- lost events -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def overflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProc, list[Path]]]:
    """A daemon whose inotify queue holds 16 events; 200 files arrive while it is stopped.

    max_queued_events is global but read when an inotify instance is created, so it is
    lowered only while the daemon starts and restored at once. SIGSTOP makes the overflow
    certain: nothing reads the queue while the burst is written."""
    d = module_daemon(tmp_path_factory.mktemp("overflow"))
    try:
        old = QUEUED_EVENTS.read_text()
        QUEUED_EVENTS.write_text("16")
    except OSError as e:
        pytest.skip(f"cannot lower fs.inotify.max_queued_events: {e}")
    try:
        d.start()
    finally:
        QUEUED_EVENTS.write_text(old)
    try:
        assert d.proc is not None
        paths = [d.inbox / f"burst_{i:03d}.tif" for i in range(200)]
        data = [valid_bytes(i, (8, 12)) for i in range(len(paths))]
        os.kill(d.proc.pid, signal.SIGSTOP)
        try:
            for p, b in zip(paths, data, strict=True):
                p.write_bytes(b)
        finally:
            os.kill(d.proc.pid, signal.SIGCONT)
        d.wait_rows(len(paths), timeout=90)
        yield d, paths
    finally:
        shutdown(d)


def test_overflowed_burst_ends_as_exactly_one_row_per_file(
    overflow: tuple[DaemonProc, list[Path]],
) -> None:
    """After an inotify overflow every file of the burst is one row: nothing lost, nothing twice."""
    d, paths = overflow
    rows = d.rows()
    assert {str(p): len(rows.get(str(p), [])) for p in paths} == {str(p): 1 for p in paths}
    assert sum(len(v) for v in rows.values()) == len(paths)
    assert d.failures() == {}


def test_overflow_is_logged_as_events_lost_and_reconciled(
    overflow: tuple[DaemonProc, list[Path]],
) -> None:
    """watchdog's overflow log line becomes an `events.lost` event, then a reconcile scan."""
    d, _ = overflow
    lost = d.events("events.lost")
    assert lost and all(e["reason"] == "inotify queue overflow" for e in lost), lost
    log = d.events()
    first_lost = next(i for i, e in enumerate(log) if e.get("event") == "events.lost")
    assert any(
        e.get("event") == "scan.done" and e.get("why") == "reconcile" for e in log[first_lost:]
    )


# -- mutation fuzz of the decoder ----------------------------------------------------------------
FUZZ_KINDS = ("uint16_gray", "lzw", "deflate", "tiled", "stack", "bigtiff", "packbits", "jpeg",
              "planar_rgb", "imagej")  # fmt: skip
SPECIAL_WORDS = (0, 1, 2, 3, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 16, 1 << 24)
_pos = st.one_of(st.integers(4, 511), st.integers(0, 1 << 16))  # header-heavy; mod length
MUTATION = st.one_of(
    st.tuples(st.just("flip"), _pos, st.integers(1, 255)),
    st.tuples(st.just("insert"), _pos, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), _pos, st.integers(1, 16)),
    st.tuples(st.just("word"), _pos, st.sampled_from(SPECIAL_WORDS)),
)


class _Hang(BaseException):
    """Raised by SIGALRM; a BaseException so no `except Exception` in decode swallows it."""


def _mutate(data: bytes, ops: list[tuple[str, int, Any]]) -> bytes:
    b = bytearray(data)
    for op, pos, arg in ops:
        at = pos % (len(b) + 1)
        if op == "flip" and at < len(b):
            b[at] ^= arg
        elif op == "insert":
            b[at:at] = arg
        elif op == "delete":
            del b[at : at + arg]
        elif op == "word":
            b[at : at + 4] = struct.pack("<I", arg)
    return bytes(b)


@pytest.mark.timeout(120, method="thread")  # a hang inside C code kills the run with stacks
@pytest.mark.parametrize("kind", FUZZ_KINDS)
def test_mutated_tiffs_decode_to_rows_or_decode_error(kind: str, tmp_path: Path) -> None:
    """Flipped/inserted/deleted bytes in a valid TIFF: rows of the spec's shape or DecodeError."""
    corpus.KINDS[kind](tmp_path / f"{kind}.tif")
    seed = (tmp_path / f"{kind}.tif").read_bytes()
    target = tmp_path / "mutant.tif"

    @settings(
        max_examples=15,  # x 10 kinds
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(ops=st.lists(MUTATION, min_size=1, max_size=6), pages=st.sampled_from(["first", "all"]))
    def check(ops: list[tuple[str, int, Any]], pages: str) -> None:
        spec = ImageSpec(height=16, width=24, dtype="uint16", pages=pages, max_pixels=1 << 20)
        target.write_bytes(_mutate(seed, ops))
        signal.alarm(10)
        try:
            rows = decode_file(target, spec)
        except _Hang:
            pytest.fail(f"decode_file hung on {kind} mutated by {ops} (pages={pages})")
        except DecodeError as e:
            assert e.reason in REASONS and e.detail, e
            return
        finally:
            signal.alarm(0)
        pages_seen = [info.page for info, _ in rows]  # plane pages, in file order
        assert pages_seen == sorted(set(pages_seen)), pages_seen
        assert pages == "all" or len(rows) <= 1
        for info, arr in rows:
            assert arr.shape == spec.row_shape and arr.dtype == spec.dtype, (info, arr.shape)
            assert info.height > 0 and info.width > 0 and info.channels in (1, 3, 4), info

    def on_alarm(signum: int, frame: object) -> None:
        raise _Hang("decode_file took more than 10 s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        check()
    finally:
        signal.signal(signal.SIGALRM, old)


def test_page_with_empty_shape_is_corrupt(tmp_path: Path) -> None:
    """A later page declaring zero rows is `corrupt` (was a cv2.error from resize)."""
    p = tmp_path / "stack.tif"
    corpus.stack(p)
    data = bytearray(p.read_bytes())
    with tifffile.TiffFile(p) as tif:
        page = tif.pages[1]
        assert isinstance(page, tifffile.TiffPage)
        tag = page.tags["ImageLength"]
        off, dtype = tag.valueoffset, tag.dtype
    struct.pack_into("<H" if dtype == 3 else "<I", data, off, 0)
    p.write_bytes(bytes(data))
    with pytest.raises(DecodeError) as e:
        decode_file(p, ImageSpec(height=16, width=24, pages="all"))
    assert e.value.reason == "corrupt" and "page 1" in e.value.detail, e.value
