"""Durability, proven by killing processes: kill -9, failpoints, disk full, EIO from fsync."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from tiffsink import open_dataset
from tiffsink.config import ImageSpec
from tiffsink.decode import decode_file
from tiffsink.testing import faults

from conftest import run_cli, shm_leftovers, wait_for
from daemon_harness import DaemonProc, source_array, tiff_bytes, write_chunked

SPEC = ImageSpec(height=32, width=48, dtype="uint16")


def check_dataset(d: DaemonProc, paths: list[Path], sources: list[Path] | None = None) -> None:
    """Each path exactly one row, equal to its reference decode; verify passes."""
    refs = {
        str(s): decode_file(p, SPEC)[0][1] for s, p in zip(sources or paths, paths, strict=True)
    }
    with open_dataset(d.dataset) as ds:
        seen: dict[str, int] = {}
        for row in range(len(ds)):
            rec = ds.record(row)
            seen[rec.source] = seen.get(rec.source, 0) + 1
            got = ds.read(row, row + 1)[0]
            np.testing.assert_array_equal(got, refs[rec.source], err_msg=rec.source)
    assert seen == dict.fromkeys(refs, 1)
    r = run_cli("verify", str(d.dataset))
    assert r.returncode == 0, r.stdout


def no_leftovers(d: DaemonProc) -> None:
    """No arena of a dead process and no temporary dataset file is left behind."""
    dead = []
    for p in shm_leftovers():
        pid = int(p.name.split("-")[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.append(p)
    assert dead == []
    assert list(d.dataset.glob("*.tmp")) == []


class Arrivals:
    """A background instrument writing files in mixed styles (chunked, rename, copy)."""

    def __init__(self, inbox: Path, n: int, seed: int = 0) -> None:
        self.inbox, self.n = inbox, n
        self.rng = random.Random(seed)
        self.paths: list[Path] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.staging = inbox.parent / "staging"
        self.staging.mkdir(exist_ok=True)

    def _run(self) -> None:
        for i in range(self.n):
            p = self.inbox / f"a{i:04d}.tif"
            data = tiff_bytes(source_array(1000 + i))
            style = i % 3
            if style == 0:
                write_chunked(p, data, chunks=3, pause_s=self.rng.uniform(0, 0.05))
            elif style == 1:
                tmp = self.inbox / f".a{i:04d}.tif.part"
                tmp.write_bytes(data)
                os.replace(tmp, p)
            else:
                s = self.staging / p.name
                s.write_bytes(data)
                shutil.move(str(s), p)
            self.paths.append(p)

    def start(self) -> Arrivals:
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join(120)


# Every way rows reach the disk: npy, uncompressed zarr (rows written in place) and
# compressed zarr (shards rewritten whole).
FORMATS: dict[str, dict[str, object]] = {
    "npy": {"format": "npy"},
    "zarr": {"format": "zarr", "compression": "none"},
    "zarr-zstd": {"format": "zarr", "compression": "zstd"},
}


def torture(tmp_path: Path, kills: int, seed: int, fmt: str = "npy") -> None:
    rng = random.Random(seed)
    d = DaemonProc(tmp_path, dataset={**FORMATS[fmt], "shard_rows": 4})
    arrivals = Arrivals(d.inbox, n=max(60, kills * 3), seed=seed).start()
    for _ in range(kills):
        d.start(wait_ready=rng.random() < 0.7)  # sometimes kill during start-up
        wait_for(lambda: d.proc is not None and d.proc.pid > 0, 5, "process")
        # The kill instant is the experiment's random variable, not a synchronisation.
        threading.Event().wait(rng.uniform(0.05, 1.2))
        d.kill_group()
    arrivals.join()
    d.start()
    d.wait_rows(len(arrivals.paths), timeout=120)
    assert d.stop() == 0
    check_dataset(d, arrivals.paths)
    no_leftovers(d)


def test_kill_minus_nine_torture(tmp_path: Path) -> None:
    """20 SIGKILLs of the daemon's process group under arrivals: every file exactly once."""
    torture(tmp_path, kills=20, seed=1)


@pytest.mark.soak
@pytest.mark.timeout(1800)  # 300 start-kill rounds take ~5 min on 2 cores, beyond the default
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_kill_minus_nine_soak(tmp_path: Path, fmt: str) -> None:
    """The same, for 300 kills (run with --soak), in either format."""
    torture(tmp_path, kills=300, seed=2, fmt=fmt)


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("point", faults.CRASH_POINTS)
def test_failpoint_recovers_without_loss_or_double(tmp_path: Path, point: str, fmt: str) -> None:
    """Dying at each step of the commit protocol recovers to every file exactly once,
    in either format."""
    done = tmp_path / "done"
    d = DaemonProc(
        tmp_path,
        env=faults.spec(crash_at=point),
        sources={"after_ingest": "move", "done_directory": str(done)},
        dataset=FORMATS[fmt],
    )
    paths = [d.inbox / f"f{i}.tif" for i in range(3)]
    for i, p in enumerate(paths):
        p.write_bytes(tiff_bytes(source_array(i)))
        os.utime(p, (1e9, 1e9))
    d.start(wait_ready=False)
    assert d.wait(60) == -signal.SIGKILL
    assert d.proc is not None
    if _group_alive(d.proc.pid):  # its workers, orphaned as after a power cut
        os.killpg(d.proc.pid, signal.SIGKILL)
    d.env.pop(faults.ENV)
    d.start()
    d.wait_rows(3)
    moved = [done / p.name for p in paths]
    wait_for(lambda: all(m.exists() for m in moved), 30, "moves into done/")
    assert d.stop() == 0
    assert not any(p.exists() for p in paths)
    check_dataset(d, moved, sources=paths)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def small_fs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 3 MiB tmpfs for the dataset, where mounting is permitted."""
    mnt = tmp_path / "smallfs"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip()}); libfiu test covers EIO")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_disk_full_pauses_then_resumes_with_nothing_lost(
    tmp_path: Path, small_fs: Path, fmt: str
) -> None:
    """ENOSPC: nothing torn is committed, the daemon says so, and resumes when space returns."""
    d = DaemonProc(
        tmp_path,
        dataset={"directory": str(small_fs / "dataset"), **FORMATS[fmt]},
        image={"height": 128, "width": 128},
    )
    d.start()
    # 120 x 32 KiB rows > 3 MiB, in every format: noise at the row's own size, which no
    # codec shrinks (zstd rows take only their compressed size on disk).
    paths = [d.inbox / f"big{i:03d}.tif" for i in range(120)]
    for i, p in enumerate(paths):
        p.write_bytes(tiff_bytes(source_array(i, (128, 128))))
    ev = wait_for(lambda: d.events("dataset.disk_full"), 60, "a disk_full event")
    assert "ENOSPC" in ev[0]["detail"] or "full" in ev[0]["detail"]
    assert d.proc is not None and d.proc.poll() is None, "daemon must stay up"
    r = run_cli("verify", str(d.dataset))
    assert r.returncode == 0, r.stdout  # committed state is consistent while paused
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_fs)], check=True)
    d.wait_rows(len(paths), timeout=120)
    assert d.events("dataset.space_available")
    assert d.stop() == 0
    spec = ImageSpec(height=128, width=128, dtype="uint16")
    with open_dataset(d.dataset) as ds:
        sources = [ds.record(i).source for i in range(len(ds))]
        assert sorted(sources) == sorted(map(str, paths))
        for i in range(0, len(ds), 17):
            ref = decode_file(ds.record(i).source, spec)[0][1]
            np.testing.assert_array_equal(ds.read(i, i + 1)[0], ref)
    assert run_cli("verify", str(d.dataset)).returncode == 0


EIO_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
/* fdatasync and fsync fail with EIO while the file named by $TIFFSINK_TEST_EIO exists. */
static int failing(void) {
    const char *trigger = getenv("TIFFSINK_TEST_EIO");
    return trigger && access(trigger, F_OK) == 0;
}
int fdatasync(int fd) {
    static int (*real)(int) = 0;
    if (failing()) { errno = EIO; return -1; }
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
int fsync(int fd) {
    static int (*real)(int) = 0;
    if (failing()) { errno = EIO; return -1; }
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}
"""


@pytest.fixture
def eio_shim(tmp_path: Path) -> Path:
    """An LD_PRELOAD library making fdatasync fail with EIO on demand (no root needed)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the fdatasync EIO shim")
    src = tmp_path / "eio.c"
    src.write_text(EIO_SHIM)
    lib = tmp_path / "libeio.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"], check=True)
    return lib


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_eio_from_fsync_exits_75_and_restart_recovers(
    tmp_path: Path, eio_shim: Path, fmt: str
) -> None:
    """EIO from fsync is not retried: exit 75, a clear log; the restart loses nothing."""
    trigger = tmp_path / "fail-fsync-now"
    env = {"LD_PRELOAD": str(eio_shim), "TIFFSINK_TEST_EIO": str(trigger)}
    d = DaemonProc(tmp_path, env=env, dataset=FORMATS[fmt]).start()
    first = [d.inbox / f"ok{i}.tif" for i in range(3)]
    for i, p in enumerate(first):
        p.write_bytes(tiff_bytes(source_array(i)))
    d.wait_rows(3)
    trigger.touch()
    later = [d.inbox / f"eio{i}.tif" for i in range(3)]
    for i, p in enumerate(later):
        p.write_bytes(tiff_bytes(source_array(10 + i)))
    assert d.wait(60) == 75
    ev = d.events("dataset.io_error")
    assert ev and "EIO" in ev[0]["detail"] and "not retried" in ev[0]["detail"]
    assert len(d.rows()) == 3  # nothing of the failed batch is visible
    trigger.unlink()
    d.start()
    d.wait_rows(6)
    assert d.stop() == 0
    check_dataset(d, first + later)
