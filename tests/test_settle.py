"""The settler: a file with no close event is ready once its size and mtime hold still."""

from __future__ import annotations

import os

from tiffsink.feed.settle import Settler

S = 1_000_000_000  # ns per second


def st(size: int, mtime_ns: int) -> os.stat_result:
    secs = mtime_ns // S
    fields = (0o100644, 0, 0, 1, 0, 0, size, secs, secs, secs)
    return os.stat_result((*fields, float(secs), float(secs), float(secs), 0, mtime_ns, 0))


class Disk:
    """Files by path as (size, mtime_ns); a missing path raises like os.stat."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[int, int]] = {}

    def stat(self, path: str) -> os.stat_result:
        if path not in self.files:
            raise FileNotFoundError(path)
        return st(*self.files[path])


class Clocks:
    def __init__(self) -> None:
        self.mono = 50.0
        self.wall_ns = 1_000 * S


def settler(trust_mtime: bool = False, settle_ms: int = 2000) -> tuple[Settler, Disk, Clocks]:
    disk, c = Disk(), Clocks()
    s = Settler(
        settle_ms,
        trust_mtime,
        clock=lambda: c.mono,
        wall_ns=lambda: c.wall_ns,
        stat=disk.stat,
    )
    return s, disk, c


def test_old_mtime_is_ready_at_once_on_a_local_disk() -> None:
    """With trusted mtimes, a file last written settle_ms ago is ready when first seen."""
    s, _disk, c = settler(trust_mtime=True)
    assert s.offer("/a.tif", st(10, c.wall_ns - 2 * S))
    assert len(s) == 0


def test_fresh_mtime_waits_on_a_local_disk() -> None:
    """A file written within settle_ms is watched, not ready."""
    s, _disk, c = settler(trust_mtime=True)
    assert not s.offer("/a.tif", st(10, c.wall_ns - S))
    assert len(s) == 1


def test_old_mtime_is_not_trusted_on_a_network_share() -> None:
    """Polling mode (NFS/SMB clocks): even an ancient mtime must be observed to hold still."""
    s, _disk, _c = settler(trust_mtime=False)
    assert not s.offer("/a.tif", st(10, 0))


def test_file_that_held_still_for_settle_ms_is_due() -> None:
    """Unchanged size and mtime for settle_ms: due, with its fresh stat, and forgotten."""
    s, disk, c = settler()
    disk.files["/a.tif"] = (10, 7)
    s.offer("/a.tif", st(10, 7))
    c.mono += 1.999
    assert s.due() == []
    c.mono += 0.001
    [(path, got)] = s.due()
    assert path == "/a.tif" and got.st_size == 10
    assert len(s) == 0


def test_a_change_restarts_the_settle_time() -> None:
    """A file that grew meanwhile is watched again for a full settle_ms from now."""
    s, disk, c = settler()
    s.offer("/a.tif", st(10, 7))
    disk.files["/a.tif"] = (20, 8)
    c.mono += 2
    assert s.due() == []
    c.mono += 1.9
    assert s.due() == []
    c.mono += 0.1
    assert [p for p, _ in s.due()] == ["/a.tif"]


def test_a_file_being_written_never_settles() -> None:
    """Paths inotify saw written and not closed are skipped however long they are quiet."""
    s, disk, c = settler()
    disk.files["/a.tif"] = (10, 7)
    s.offer("/a.tif", st(10, 7))
    c.mono += 3600
    assert s.due(writing={"/a.tif"}) == []
    assert [p for p, _ in s.due()] == ["/a.tif"]


def test_a_file_being_written_is_not_ready_even_with_an_old_mtime() -> None:
    """A writer pausing between chunks can leave an old mtime: it is not proof of quiet."""
    s, _disk, _c = settler(trust_mtime=True)
    assert not s.offer("/a.tif", st(10, 0), writing={"/a.tif"})


def test_a_vanished_file_is_dropped() -> None:
    """A file deleted before it settled is forgotten, never reported."""
    s, _disk, c = settler()
    s.offer("/a.tif", st(10, 7))
    c.mono += 5
    assert s.due() == []
    assert len(s) == 0


def test_forget_stops_watching() -> None:
    """forget (the file became ready another way) removes it from the watch."""
    s, _disk, _c = settler()
    s.offer("/a.tif", st(10, 7))
    s.forget("/a.tif")
    assert len(s) == 0
