"""Feeder parts: the name filter, the lazy folder walk, and the event queue."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from tiffsink.feed.events import EventQueue, EventsLost, FileEvent, Kind
from tiffsink.feed.names import NameFilter, inside
from tiffsink.feed.scan import count_files, walk

TIFFS = NameFilter(("*.tif", "*.tiff"), (".*", "*.part", "*.tmp", "*~"))


def test_names_match_case_insensitively() -> None:
    """Instruments write .TIF as often as .tif: both match, and .Tiff too."""
    assert TIFFS("/in/a.tif") and TIFFS("/in/B.TIF") and TIFFS("/in/c.Tiff")


def test_hidden_and_temporary_names_never_match() -> None:
    """A file is taken only under its final name: hidden, .part, .tmp and ~ names are not."""
    for name in (".a.tif", "a.tif.part", "a.tif.tmp", "a.tif~", ".~a.TIF"):
        assert not TIFFS(f"/in/{name}"), name


def test_other_extensions_do_not_match() -> None:
    """Only the configured patterns count: a PNG or a sidecar is not ingested."""
    assert not TIFFS("/in/a.png") and not TIFFS("/in/a.tif.json") and not TIFFS("/in/tif")


def test_non_utf8_name_is_refused_and_logged_once(capsys: object) -> None:
    """A path SQLite cannot store is never a match (the user must rename it)."""
    f = NameFilter(("*.tif",), ())
    bad = os.fsdecode(b"/in/caf\xe9.tif")
    assert not f(bad) and not f(bad)
    assert len(f._unsupported) == 1


def test_inside_is_by_path_component() -> None:
    """/data/done2 is not inside /data/done; /data/done/x is."""
    assert inside("/data/done/x.tif", [Path("/data/done")])
    assert not inside("/data/done2/x.tif", [Path("/data/done")])


def tree(root: Path) -> None:
    for rel in ("a.tif", "sub/b.tif", "sub/deeper/c.TIF", "sub/.hidden.tif", "notes.txt"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_walk_yields_every_wanted_file_with_its_lstat(tmp_path: Path) -> None:
    """All wanted files in all sub-folders, each with its lstat size."""
    tree(tmp_path)
    got = {os.path.relpath(p, tmp_path): st.st_size for p, st in walk(tmp_path, TIFFS)}
    assert got == {"a.tif": 1, "sub/b.tif": 1, "sub/deeper/c.TIF": 1}


def test_walk_non_recursive_stays_in_the_folder(tmp_path: Path) -> None:
    """recursive = false: only the top folder's files."""
    tree(tmp_path)
    assert [os.path.basename(p) for p, _ in walk(tmp_path, TIFFS, recursive=False)] == ["a.tif"]


def test_walk_skips_excluded_folders(tmp_path: Path) -> None:
    """The done/failed/dataset folders under the inbox are never listed."""
    tree(tmp_path)
    got = sorted(os.path.basename(p) for p, _ in walk(tmp_path, TIFFS, exclude=[tmp_path / "sub"]))
    assert got == ["a.tif"]


def test_walk_does_not_descend_symlinked_folders_but_yields_symlinked_files(
    tmp_path: Path,
) -> None:
    """A folder link could loop or escape the root; a file link is yielded for the decoder
    to refuse with a reason."""
    tree(tmp_path)
    (tmp_path / "loop").symlink_to(tmp_path)
    (tmp_path / "link.tif").symlink_to(tmp_path / "a.tif")
    got = sorted(os.path.relpath(p, tmp_path) for p, _ in walk(tmp_path, TIFFS))
    assert got == ["a.tif", "link.tif", "sub/b.tif", "sub/deeper/c.TIF"]


def test_count_files_counts_what_walk_yields(tmp_path: Path) -> None:
    """The backfill's progress total (names only) equals the files the walk will feed."""
    tree(tmp_path)
    (tmp_path / "loop").symlink_to(tmp_path)
    (tmp_path / "link.tif").symlink_to(tmp_path / "a.tif")
    for kw in ({}, {"recursive": False}, {"exclude": [tmp_path / "sub"]}):
        assert count_files(tmp_path, TIFFS, **kw) == len(list(walk(tmp_path, TIFFS, **kw)))
    assert count_files(tmp_path, TIFFS) == 4


def test_walk_of_a_missing_folder_yields_nothing(tmp_path: Path) -> None:
    """A folder removed between event and scan is not an error."""
    assert list(walk(tmp_path / "gone", TIFFS)) == []


def test_walk_is_lazy(tmp_path: Path) -> None:
    """The first file comes out before the rest of the tree is listed."""
    tree(tmp_path)
    it = walk(tmp_path, TIFFS)
    first, _ = next(it)
    (tmp_path / "sub" / "late.tif").write_bytes(b"x")  # listed after the first yield
    rest = [os.path.basename(p) for p, _ in it]
    assert os.path.basename(first) == "a.tif" and "late.tif" in rest


def test_event_queue_gives_events_in_order() -> None:
    """take() returns what was put, oldest first, and at most `limit`."""
    q = EventQueue()
    events = [FileEvent(Kind.READY, f"/in/{i}.tif") for i in range(5)]
    for e in events:
        q.put(e)
    assert q.take(3) == events[:3]
    assert q.take(10) == events[3:]
    assert q.take(10) == []


def test_event_queue_wait_returns_on_an_event_and_keeps_it() -> None:
    """wait() wakes when another thread puts an event, which take() then returns first."""
    q = EventQueue()
    lost = EventsLost("inotify queue overflow")
    threading.Timer(0.05, q.put, (lost,)).start()
    t0 = time.monotonic()
    q.wait(30)
    assert time.monotonic() - t0 < 10
    q.put(FileEvent(Kind.GONE, "/in/x.tif"))
    assert q.take(10) == [lost, FileEvent(Kind.GONE, "/in/x.tif")]


def test_event_queue_wait_times_out_empty() -> None:
    """With nothing put, wait() returns after its timeout and take() is empty."""
    q = EventQueue()
    q.wait(0.01)
    assert q.take(10) == []
