"""`tiffsink run` end to end: a real daemon process, real writers, real files."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tiffsink import open_dataset
from tiffsink.config import ImageSpec
from tiffsink.decode import decode_file

from conftest import shm_leftovers, wait_for
from daemon_harness import DaemonProc, source_array, tiff_bytes, write_chunked

SPEC = ImageSpec(height=32, width=48, dtype="uint16")


def assert_rows_match_reference(d: DaemonProc) -> None:
    """Every committed row equals the single-file decode of its source."""
    with open_dataset(d.dataset) as ds:
        for row in range(len(ds)):
            rec = ds.record(row)
            ref = dict((info.page, arr) for info, arr in decode_file(rec.source, SPEC))
            np.testing.assert_array_equal(ds.images[row], ref[rec.page], err_msg=rec.source)


def assert_exactly_once(d: DaemonProc, paths: list[Path]) -> None:
    rows = d.rows()
    for p in paths:
        assert len(rows.get(str(p), [])) == 1, f"{p}: {len(rows.get(str(p), []))} rows"
    assert sum(len(v) for v in rows.values()) == len(paths)


def test_files_present_before_start_are_ingested(tmp_path: Path) -> None:
    """Files already in the inbox when the daemon starts are found by the start scan."""
    d = DaemonProc(tmp_path)
    paths = [d.inbox / f"old_{i}.tif" for i in range(5)]
    for i, p in enumerate(paths):
        p.write_bytes(tiff_bytes(source_array(i)))
        os.utime(p, (1e9, 1e9))  # long settled
    d.start()
    d.wait_rows(5)
    assert d.stop() == 0
    assert_exactly_once(d, paths)
    assert_rows_match_reference(d)


def test_slow_chunked_writer_is_ingested_once_complete(tmp_path: Path) -> None:
    """A writer pausing longer than max_wait_ms between chunks yields one complete row."""
    d = DaemonProc(tmp_path).start()
    p = d.inbox / "slow.tif"
    write_chunked(p, tiff_bytes(source_array(1)), chunks=4, pause_s=0.4)
    d.wait_rows(1)
    assert d.stop() == 0
    assert_exactly_once(d, [p])
    assert d.failures() == {}
    assert_rows_match_reference(d)


def test_temp_then_rename_ingests_final_name_only(tmp_path: Path) -> None:
    """A hidden temp file renamed into place is ingested under its final name, once."""
    d = DaemonProc(tmp_path).start()
    tmp = d.inbox / ".frame.tif.part"
    tmp.write_bytes(tiff_bytes(source_array(2)))
    final = d.inbox / "frame.tif"
    os.replace(tmp, final)
    d.wait_rows(1)
    assert d.stop() == 0
    assert_exactly_once(d, [final])


def test_cp_and_mv_from_another_folder(tmp_path: Path) -> None:
    """`cp` into the inbox and `mv` from elsewhere are both ingested exactly once."""
    d = DaemonProc(tmp_path).start()
    outside = tmp_path / "outside"
    outside.mkdir()
    a, b = outside / "a.tif", outside / "b.tif"
    a.write_bytes(tiff_bytes(source_array(3)))
    b.write_bytes(tiff_bytes(source_array(4)))
    subprocess.run(["cp", str(a), str(d.inbox / "a.tif")], check=True)
    subprocess.run(["mv", str(b), str(d.inbox / "b.tif")], check=True)
    d.wait_rows(2)
    assert d.stop() == 0
    assert_exactly_once(d, [d.inbox / "a.tif", d.inbox / "b.tif"])
    assert_rows_match_reference(d)


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_rsync_into_inbox(tmp_path: Path) -> None:
    """rsync's hidden temp files are ignored; the renamed results are ingested once."""
    d = DaemonProc(tmp_path).start()
    src = tmp_path / "src"
    src.mkdir()
    names = [f"r{i}.tif" for i in range(4)]
    for i, n in enumerate(names):
        (src / n).write_bytes(tiff_bytes(source_array(10 + i)))
    subprocess.run(["rsync", "-a", f"{src}/", f"{d.inbox}/"], check=True)
    d.wait_rows(4)
    assert d.stop() == 0
    assert_exactly_once(d, [d.inbox / n for n in names])


def test_folder_created_while_running_is_watched(tmp_path: Path) -> None:
    """Files in a new sub-folder are found, including ones written before its watch."""
    d = DaemonProc(tmp_path).start()
    sub = d.inbox / "run1" / "plate2"
    sub.mkdir(parents=True)
    paths = [sub / f"w{i}.tif" for i in range(3)]
    for i, p in enumerate(paths):
        p.write_bytes(tiff_bytes(source_array(20 + i)))
    d.wait_rows(3)
    later = sub / "late.tif"
    later.write_bytes(tiff_bytes(source_array(30)))
    d.wait_rows(4)
    assert d.stop() == 0
    assert_exactly_once(d, [*paths, later])


def test_sigterm_mid_stream_commits_and_restart_finishes(tmp_path: Path) -> None:
    """SIGTERM while files arrive exits 0; after a restart every file is in exactly once."""
    d = DaemonProc(tmp_path).start()
    paths = [d.inbox / f"s{i:03d}.tif" for i in range(40)]
    writer_done = threading.Event()

    def write_all() -> None:
        for i, p in enumerate(paths):
            p.write_bytes(tiff_bytes(source_array(100 + i)))
        writer_done.set()

    t = threading.Thread(target=write_all)
    t.start()
    d.wait_rows(5)
    assert d.stop() == 0
    t.join()
    assert d.events("daemon.stopped")
    d.start()
    d.wait_rows(len(paths))
    assert d.stop() == 0
    assert_exactly_once(d, paths)
    assert_rows_match_reference(d)


def test_broken_file_is_recorded_once_and_retried_only_when_changed(tmp_path: Path) -> None:
    """A truncated TIFF becomes one failure; rewriting it valid gets it ingested."""
    d = DaemonProc(tmp_path, watch={"rescan_interval_s": 1}).start()
    bad = d.inbox / "bad.tif"
    bad.write_bytes(tiff_bytes(source_array(5))[:300])
    wait_for(lambda: d.failures().get(str(bad)), 30, "a failure record")
    scans = len(d.events("scan.done"))
    wait_for(lambda: len(d.events("scan.done")) >= scans + 2, 30, "two more rescans")
    assert len(d.events("file.failed")) == 1  # not tried again in a loop
    bad.write_bytes(tiff_bytes(source_array(5)))
    d.wait_rows(1)
    assert d.stop() == 0
    assert_rows_match_reference(d)


def test_after_ingest_move_keeps_relative_path(tmp_path: Path) -> None:
    """after_ingest=move puts the committed file under done_directory at its relative path."""
    done = tmp_path / "done"
    d = DaemonProc(tmp_path, sources={"after_ingest": "move", "done_directory": str(done)})
    d.start()
    (d.inbox / "day1").mkdir()
    p = d.inbox / "day1" / "m.tif"
    p.write_bytes(tiff_bytes(source_array(6)))
    d.wait_rows(1)
    wait_for(lambda: (done / "day1" / "m.tif").exists(), 30, "the moved file")
    assert not p.exists()
    assert d.stop() == 0
    assert list(d.rows()) == [str(p)]


def test_polling_mode_ingests_after_settle(tmp_path: Path) -> None:
    """With polling = true (NFS/SMB) files are ingested once size and mtime settle."""
    d = DaemonProc(tmp_path, watch={"polling": True, "poll_interval_ms": 100, "settle_ms": 300})
    d.start()
    p = d.inbox / "nfs.tif"
    write_chunked(p, tiff_bytes(source_array(7)), chunks=3, pause_s=0.1)
    d.wait_rows(1)
    assert d.stop() == 0
    assert_exactly_once(d, [p])
    assert d.failures() == {}


def test_sd_notify_ready_status_and_stopping(tmp_path: Path) -> None:
    """The daemon sends READY=1 after start-up and STOPPING=1 on SIGTERM to NOTIFY_SOCKET."""
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(60)
    try:
        d = DaemonProc(tmp_path, env={"NOTIFY_SOCKET": str(sock_path)}).start(wait_ready=False)
        got: list[str] = []
        while not any(m.startswith("STATUS=") for m in got):
            got.append(sock.recv(4096).decode())
        assert "READY=1" in got
        assert d.stop() == 0
        while "STOPPING=1" not in got:
            got.append(sock.recv(4096).decode())
        assert got.index("READY=1") < got.index("STOPPING=1")
    finally:
        sock.close()


def test_second_signal_exits_at_once(tmp_path: Path) -> None:
    """A second SIGTERM ends the daemon immediately; the next start recovers."""
    d = DaemonProc(tmp_path).start()
    d.signal(signal.SIGTERM)
    d.signal(signal.SIGTERM)
    rc = d.wait(30)
    assert rc in (0, 1)
    d.start()
    assert d.stop() == 0


def test_no_shared_memory_left_after_stop(tmp_path: Path) -> None:
    """A clean stop unlinks the daemon's shared-memory arena."""
    d = DaemonProc(tmp_path).start()
    assert d.proc is not None
    mine = f"tiffsink-{d.proc.pid}-"
    assert [p for p in shm_leftovers() if p.name.startswith(mine)], "no arena while running"
    assert d.stop() == 0
    assert [p for p in shm_leftovers() if p.name.startswith(mine)] == []


def test_sigusr1_dumps_thread_stacks_and_keeps_running(tmp_path: Path) -> None:
    """SIGUSR1 prints every thread's stack (for a stuck service) and the daemon goes on."""
    d = DaemonProc(tmp_path).start()
    d.signal(signal.SIGUSR1)
    wait_for(
        lambda: "most recent call first" in d.log_path.read_text(errors="replace"),
        30,
        "a stack dump in the log",
    )
    p = d.inbox / "after_dump.tif"
    p.write_bytes(tiff_bytes(source_array(77)))
    d.wait_rows(1)
    assert d.stop() == 0


IDLE_WAIT_UNDER_SIGNALS = r"""
import os, signal, sys, threading, time
from tiffsink.feed.events import EventQueue

q = EventQueue()
def slow_handler(signum, frame):  # outlasts the wait's timeout, like a handler that logs
    t = time.monotonic()
    while time.monotonic() - t < 0.02:
        pass
signal.signal(signal.SIGUSR2, slow_handler)
def pelt():
    for _ in range(100):
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(0.03)
threading.Thread(target=pelt, daemon=True).start()
end = time.monotonic() + 3
while time.monotonic() < end:
    q.wait(0.005)
print("returned every time")
"""


def test_idle_wait_returns_when_signals_interrupt_it(tmp_path: Path) -> None:
    """The loop's wait never blocks past its timeout when a signal interrupts it (SIGTERM)."""
    r = subprocess.run(
        [sys.executable, "-c", IDLE_WAIT_UNDER_SIGNALS],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "returned every time" in r.stdout, r.stderr
