"""Small service and pipeline parts: stop signals, disk-full guard, fault specs, layout, intake."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tiffsink.batch import Batcher
from tiffsink.config import parse_config
from tiffsink.dataset.layout import Layout
from tiffsink.errors import DatasetError
from tiffsink.feed.events import EventQueue, EventsLost, FileEvent, Kind
from tiffsink.feed.report import CommitInfo
from tiffsink.pipeline.space import FULL_RECHECK_S, SpaceGuard
from tiffsink.service.intake import Intake
from tiffsink.service.progress import Summary
from tiffsink.signals import StopSignals
from tiffsink.testing import faults


class Exits:
    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def __call__(self, code: int, message: str) -> None:
        self.calls.append((code, message))


def test_first_signal_only_requests_a_stop() -> None:
    """SIGTERM sets the flag and its name; nothing exits."""
    exits = Exits()
    stop = StopSignals(1, "bye", exit_now=exits)
    with stop:
        os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested and stop.name == "SIGTERM"
    assert exits.calls == []


def test_second_signal_exits_at_once_with_the_given_code() -> None:
    """The second stop signal calls the exit with the code and message it was built with."""
    exits = Exits()
    stop = StopSignals(130, "stopping at once", exit_now=exits)
    with stop:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
    assert exits.calls == [(130, "stopping at once")]


def test_previous_handlers_are_restored() -> None:
    """Leaving the block puts back whatever handled SIGTERM and SIGINT before."""

    def mine(signum: int, frame: object) -> None:
        pass

    old_int = signal.signal(signal.SIGINT, mine)
    try:
        before_term = signal.getsignal(signal.SIGTERM)
        with StopSignals(1, "x", exit_now=Exits()):
            assert signal.getsignal(signal.SIGINT) is not mine
        assert signal.getsignal(signal.SIGINT) is mine
        assert signal.getsignal(signal.SIGTERM) is before_term
    finally:
        signal.signal(signal.SIGINT, old_int)


class Disk:
    def __init__(self, free: int) -> None:
        self.free, self.looks = free, 0

    def __call__(self, path: Path) -> int:
        self.looks += 1
        return self.free


def guard(free: int) -> tuple[SpaceGuard, Disk, list[float]]:
    now = [0.0]
    disk = Disk(free)
    g = SpaceGuard(Path("/ds"), need_bytes=1000, clock=lambda: now[0], free_bytes=disk)
    return g, disk, now


def test_space_guard_is_open_until_paused() -> None:
    """Before any disk-full, intake is never held back and the disk is not even looked at."""
    g, disk, _ = guard(free=0)
    assert g.ok() and not g.paused and disk.looks == 0


def test_space_guard_rechecks_only_every_few_seconds() -> None:
    """After a pause, statvfs runs at most once per FULL_RECHECK_S."""
    g, disk, now = guard(free=0)
    g.pause()
    now[0] = FULL_RECHECK_S - 0.1
    assert not g.ok() and disk.looks == 0
    now[0] = FULL_RECHECK_S
    assert not g.ok() and disk.looks == 1
    assert not g.ok() and disk.looks == 1


def test_space_guard_resumes_once_there_is_room_for_two_batches() -> None:
    """Intake resumes by itself when free space reaches what it needs."""
    g, disk, now = guard(free=999)
    g.pause()
    now[0] = FULL_RECHECK_S
    assert not g.ok()
    disk.free = 1000
    now[0] = 2 * FULL_RECHECK_S
    assert g.ok() and not g.paused


def test_fault_spec_round_trips() -> None:
    """spec() builds the variable that parse() reads back."""
    env = faults.spec(crash_at="after_data_fsync", hang="stuck")
    assert faults.parse(env[faults.ENV]) == {"crash_at": "after_data_fsync", "hang": "stuck"}


@pytest.mark.parametrize("text", ["crash_at=nowhere", "segv", "explode=x", "hang="])
def test_fault_spec_typos_are_errors(text: str) -> None:
    """A misspelt fault must fail loudly, or a test would pass with nothing injected."""
    with pytest.raises(ValueError, match=faults.ENV):
        faults.parse(text)


def test_layout_names_the_dataset_files(tmp_path: Path) -> None:
    """One place names images.npy, index.sqlite and writer.lock."""
    lay = Layout.of(tmp_path)
    assert (lay.images.name, lay.index.name, lay.lock.name) == (
        "images.npy",
        "index.sqlite",
        "writer.lock",
    )


def test_layout_require_names_the_folder(tmp_path: Path) -> None:
    """A folder without both files is refused with its path in the message: "not a
    tiffsink dataset" when it has neither, "damaged" when it has one of them."""
    with pytest.raises(DatasetError, match="not a tiffsink dataset") as e:
        Layout.of(tmp_path).require()
    assert e.value.path == str(tmp_path)
    (tmp_path / "index.sqlite").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"damaged dataset: images\.npy missing") as e:
        Layout.of(tmp_path).require()
    assert e.value.path == str(tmp_path)
    assert Layout.of(tmp_path).missing() == [tmp_path / "images.npy"]


class FakeScanner:
    def __init__(self) -> None:
        self.started: list[tuple[Path, str]] = []
        self.full = 0

    def start(self, folder: Path, why: str) -> None:
        self.started.append((folder, why))

    def request_full(self) -> None:
        self.full += 1


def intake(tmp_path: Path) -> tuple[Intake, Batcher, FakeScanner, list[str]]:
    """An Intake on a real inbox with fakes for the scanner and disposal it delegates to."""
    cfg = parse_config(
        {
            "watch": {"directory": "inbox", "settle_ms": 60_000},
            "dataset": {"directory": "inbox/ds"},
        },
        tmp_path,
    )
    (tmp_path / "inbox").mkdir()
    batcher, scanner, known = Batcher(64, 1000), FakeScanner(), []
    disposal = type("D", (), {"known": lambda self, p: known.append(p)})()
    return Intake(cfg, EventQueue(), batcher, scanner, disposal), batcher, scanner, known  # type: ignore[arg-type]


def test_intake_ready_file_becomes_a_candidate_with_its_version(tmp_path: Path) -> None:
    """A closed file is a candidate at once, with the size and mtime it has now."""
    it, batcher, _, _ = intake(tmp_path)
    p = tmp_path / "inbox" / "a.tif"
    p.write_bytes(b"12345")
    it.handle(FileEvent(Kind.READY, str(p)))
    [c] = batcher.take()
    assert (c.path, c.size, c.mtime_ns) == (str(p), 5, p.stat().st_mtime_ns)


def test_intake_file_being_written_waits_for_its_close(tmp_path: Path) -> None:
    """WRITING then a settle sighting: not a candidate until the close (READY) arrives."""
    it, batcher, _, _ = intake(tmp_path)
    p = tmp_path / "inbox" / "a.tif"
    p.write_bytes(b"1")
    os.utime(p, (1e9, 1e9))  # an old mtime would otherwise count as settled
    it.handle(FileEvent(Kind.WRITING, str(p)))
    it.handle(FileEvent(Kind.SETTLE, str(p)))
    assert len(batcher) == 0
    it.handle(FileEvent(Kind.READY, str(p)))
    assert len(batcher) == 1 and str(p) not in it.writing


def test_intake_ignores_unwanted_and_excluded_paths(tmp_path: Path) -> None:
    """Wrong names, files under the dataset folder and vanished files are not candidates."""
    it, batcher, scanner, _ = intake(tmp_path)
    (tmp_path / "inbox" / "ds").mkdir()
    for rel in ("notes.txt", "ds/x.tif"):
        (tmp_path / "inbox" / rel).write_bytes(b"1")
        it.handle(FileEvent(Kind.READY, str(tmp_path / "inbox" / rel)))
    it.handle(FileEvent(Kind.READY, str(tmp_path / "inbox" / "gone.tif")))
    it.handle(FileEvent(Kind.FOLDER, str(tmp_path / "inbox" / "ds")))
    assert len(batcher) == 0 and scanner.started == []


def test_intake_routes_folders_losses_and_known_files(tmp_path: Path) -> None:
    """A new folder is scanned, lost events ask for a full scan, known files go to disposal."""
    it, _, scanner, known = intake(tmp_path)
    it.handle(FileEvent(Kind.FOLDER, str(tmp_path / "inbox" / "run2")))
    it.handle(EventsLost("inotify queue overflow"))
    it.handle(FileEvent(Kind.KNOWN, "/inbox/old.tif"))
    assert scanner.started == [(tmp_path / "inbox" / "run2", "new-folder")]
    assert scanner.full == 1 and known == ["/inbox/old.tif"]


def _commit(rows: int) -> CommitInfo:
    return CommitInfo(
        batch_id=1,
        rows=rows,
        ingested=[],
        failed=[],
        skipped=0,
        commit_ms=1.0,
        batch_ms=1.0,
        first_row=0,
    )


def test_steady_rate_leaves_out_everything_before_the_first_commit() -> None:
    """Rows/s count from the first commit to the last: startup and the first batch are not
    in it, and it is unknown until a second commit."""
    s = Summary()
    s.add(_commit(64), at=10.0)  # after 10 s of worker start-up
    assert s.steady_rows_per_s is None
    s.add(_commit(64), at=10.5)
    s.add(_commit(36), at=11.0)
    assert s.steady_rows_per_s == pytest.approx(100.0)
    assert any("100.0 rows/s" in line for line in s.lines())
