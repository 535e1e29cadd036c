"""`tiffsink ingest --scheduler`: the backfill on a real Dask cluster, exactly once.

A LocalCluster of worker processes, or a real `dask scheduler` with `dask worker`
processes for the kill tests; the results are compared with a local ingest of the same
corpus.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tiffsink import open_dataset
from tiffsink.config import load_config
from tiffsink.dataset.verify import verify
from tiffsink.dataset.writer import DatasetWriter
from tiffsink.testing import faults

from conftest import run_cli, small_sections, tiffsink_cmd, wait_for, write_config

DASK = [str(Path(sys.executable).parent / "dask")]


def corpus(folder: Path, n: int, broken: int = 0) -> list[Path]:
    """n good TIFFs (one of them three pages) and `broken` files that are not TIFFs."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"img_{i:04d}.tif"
        rng = np.random.default_rng(i)
        if i == 3:
            with tifffile.TiffWriter(p) as tw:
                for _ in range(3):
                    tw.write(rng.integers(1, 65535, (40, 50), dtype=np.uint16))
        else:
            tifffile.imwrite(p, rng.integers(1, 65535, (40 + i % 5, 50), dtype=np.uint16))
        out.append(p)
    for i in range(broken):
        p = folder / f"broken_{i}.tif"
        p.write_bytes(b"II*\x00" + bytes(range(200)) * (i + 1))
        out.append(p)
    return out


def cfg(tmp: Path, name: str, fmt: str = "zarr", shard_rows: int = 8) -> Path:
    ds = {"directory": str(tmp / name), "format": fmt, "shard_rows": shard_rows}
    return write_config(
        tmp / f"{name}.toml",
        small_sections(tmp, dataset=ds, image={"pages": "all"}, log={"level": "warning"}),
    )


def table(dataset: Path) -> dict[tuple[str, int], tuple[np.ndarray, str]]:
    """(source, page) -> (row, metadata): what a row is, wherever it landed."""
    with open_dataset(dataset) as ds:
        return {
            (r.source, r.page): (ds.read(r.row, r.row + 1)[0], r.meta)
            for r in (ds.record(i) for i in range(len(ds)))
        }


def failures(dataset: Path) -> dict[str, str]:
    with open_dataset(dataset) as ds:
        return {f.source: f.reason for f in ds.failures()}


def assert_same_as_local(tmp: Path, src: Path, name: str) -> None:
    """The same (source, page) rows, equal pixel for pixel, and the same failures, as a
    local ingest of the same corpus; verify passes."""
    local = cfg(tmp, "local")
    r = run_cli("ingest", str(src), "--config", str(local))
    assert r.returncode in (0, 1), r.stderr
    got, want = table(tmp / name), table(tmp / "local")
    assert sorted(got) == sorted(want)
    for key, (row, meta) in want.items():
        np.testing.assert_array_equal(got[key][0], row, err_msg=str(key))
        assert got[key][1] == meta, key
    assert failures(tmp / name) == failures(tmp / "local")
    rep = verify(tmp / name)
    assert rep.ok, rep.problems


def test_local_cluster_ingest_equals_a_local_ingest(tmp_path: Path) -> None:
    """A LocalCluster of 2 worker processes: same rows and failures as the local pool."""
    src = tmp_path / "src"
    corpus(src, 30, broken=3)
    r = run_cli("ingest", str(src), "--config", str(cfg(tmp_path, "dz")), "--scheduler", "local")
    assert r.returncode == 0, r.stderr  # failed files are recorded, not an error
    assert "rows added:   32 (from 30 files)" in r.stdout, r.stdout
    assert_same_as_local(tmp_path, src, "dz")
    again = run_cli(
        "ingest", str(src), "--config", str(cfg(tmp_path, "dz")), "--scheduler", "local"
    )
    assert "skipped:      33" in again.stdout, again.stdout


def test_tasks_slower_than_the_clients_wait_are_waited_for(tmp_path: Path) -> None:
    """A decode task that takes longer than the client's polling wait still lands."""
    src = tmp_path / "src"
    corpus(src, 4)
    slow = faults.spec(slow="img_0001")  # a second longer: the only task in flight
    conf = str(cfg(tmp_path, "dw", shard_rows=64))
    r = run_cli("ingest", str(src), "--config", conf, "--scheduler", "local", env=slow)
    assert r.returncode == 0, r.stderr
    assert "rows added:   6 (from 4 files)" in r.stdout, r.stdout


def test_an_npy_dataset_is_refused_before_any_work(tmp_path: Path) -> None:
    """format = "npy" with a scheduler: a clear refusal, and nothing is created."""
    corpus(tmp_path / "src", 2)
    conf = cfg(tmp_path, "dn", fmt="npy")
    r = run_cli("ingest", str(tmp_path / "src"), "--config", str(conf), "--scheduler", "local")
    assert r.returncode == 2
    assert 'format = "zarr"' in r.stderr
    assert not (tmp_path / "dn").exists()


def test_a_dataset_folder_workers_cannot_write_is_refused(tmp_path: Path) -> None:
    """The workers' write probe fails (here: tmp/ is a read-only mount): refused, naming
    the workers and the reason, before any work."""
    corpus(tmp_path / "src", 2)
    conf = cfg(tmp_path, "dr")
    c = load_config(conf)
    DatasetWriter(c.dataset.directory, c.image, c.dataset.storage).close()  # it exists
    tmp = tmp_path / "dr" / "tmp"
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(tmp)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here ({r.stderr.strip()})")
    try:
        r2 = run_cli("ingest", str(tmp_path / "src"), "--config", str(conf), "--scheduler", "local")
    finally:
        subprocess.run(["umount", "-l", str(tmp)], check=False)
    assert r2.returncode == 2, r2.stdout
    assert "every worker can write" in r2.stderr and "Read-only file system" in r2.stderr
    with open_dataset(tmp_path / "dr") as ds:
        assert len(ds) == 0


def test_a_bad_scheduler_value_names_the_key(tmp_path: Path) -> None:
    """[cluster] scheduler must be "", "local" or an address."""
    conf = tmp_path / "c.toml"
    conf.write_text('[cluster]\nscheduler = "somewhere"\n')
    r = run_cli("ingest", str(tmp_path), "--config", str(conf))
    assert r.returncode == 2
    assert "cluster.scheduler" in r.stderr or "scheduler" in r.stderr


# -- a real scheduler and workers -------------------------------------------------------


class Cluster:
    """`dask scheduler` and `dask worker` processes, each in its own process group."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.file = tmp / "scheduler.json"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log = open(tmp / "cluster.log", "ab")  # noqa: SIM115

    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            args,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.procs.append(p)
        return p

    def start(self) -> str:
        self._spawn(
            [
                *DASK,
                "scheduler",
                "--scheduler-file",
                str(self.file),
                "--port",
                "0",
                "--no-dashboard",
            ]
        )
        wait_for(lambda: self.file.exists() and self.file.stat().st_size, 60, "scheduler")
        address: str = json.loads(self.file.read_text())["address"]
        return address

    def worker(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self._spawn(
            [
                *DASK,
                "worker",
                "--scheduler-file",
                str(self.file),
                "--nthreads",
                "1",
                "--no-dashboard",
                "--name",
                f"w{len(self.procs)}",
            ],
            env,
        )

    def workers_seen(self) -> int:
        from distributed import Client

        with Client(json.loads(self.file.read_text())["address"], timeout="10s") as c:
            return len(c.scheduler_info()["workers"])

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(30)
        self.log.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def test_workers_at_another_version_are_refused_by_name(tmp_path: Path, cluster: Cluster) -> None:
    """A worker whose tiffsink differs is named in the refusal; nothing is written."""
    fake = tmp_path / "fake"
    (fake / "tiffsink").mkdir(parents=True)
    (fake / "tiffsink" / "__init__.py").write_text('__version__ = "0.0.1"\n')
    address = cluster.start()
    cluster.worker(env={"PYTHONPATH": str(fake)})
    wait_for(lambda: cluster.workers_seen() == 1, 60, "worker")
    corpus(tmp_path / "src", 2)
    conf = cfg(tmp_path, "dv")
    r = run_cli("ingest", str(tmp_path / "src"), "--config", str(conf), "--scheduler", address)
    assert r.returncode == 2, r.stdout
    assert "has 0.0.1" in r.stderr and "w1" in r.stderr, r.stderr
    with open_dataset(tmp_path / "dv") as ds:
        assert len(ds) == 0


def test_a_worker_killed_mid_run_loses_and_doubles_nothing(
    tmp_path: Path, cluster: Cluster
) -> None:
    """SIGKILL one of two `dask worker`s once rows are committing: Dask reruns its tasks,
    and the dataset is the local ingest's, exactly."""
    address = cluster.start()
    victim = cluster.worker()
    cluster.worker()
    wait_for(lambda: cluster.workers_seen() == 2, 60, "workers")
    src = tmp_path / "src"
    corpus(src, 160, broken=2)
    conf = cfg(tmp_path, "dk", shard_rows=4)
    client = subprocess.Popen(
        [*tiffsink_cmd(), "ingest", str(src), "--config", str(conf), "--scheduler", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: _rows(tmp_path / "dk") >= 8 or client.poll() is not None, 120, "rows")
    assert _rows(tmp_path / "dk") < 162 and client.poll() is None, "the kill came too late"
    os.killpg(victim.pid, signal.SIGKILL)
    _, err = client.communicate(timeout=300)
    assert client.returncode == 0, err
    assert_same_as_local(tmp_path, src, "dk")


def test_a_client_killed_mid_run_resumes_on_rerun(tmp_path: Path, cluster: Cluster) -> None:
    """SIGKILL the client mid-run: committed rows stay, the rerun adds the rest, once."""
    address = cluster.start()
    cluster.worker()
    cluster.worker()
    wait_for(lambda: cluster.workers_seen() == 2, 60, "workers")
    src = tmp_path / "src"
    corpus(src, 160, broken=2)
    conf = cfg(tmp_path, "dc", shard_rows=4)
    args = [*tiffsink_cmd(), "ingest", str(src), "--config", str(conf), "--scheduler", address]
    client = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: _rows(tmp_path / "dc") >= 8 or client.poll() is not None, 120, "rows")
    client.kill()
    client.wait(30)
    before = _rows(tmp_path / "dc")
    assert 8 <= before < 162, "the kill did not land mid-run"
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert_same_as_local(tmp_path, src, "dc")


def test_ctrl_c_cancels_the_tasks_and_commits_nothing_half_way(
    tmp_path: Path, cluster: Cluster
) -> None:
    """SIGINT mid-run: exit 130, the dataset verifies, and a rerun completes it exactly."""
    address = cluster.start()
    cluster.worker()
    wait_for(lambda: cluster.workers_seen() == 1, 60, "worker")
    src = tmp_path / "src"
    corpus(src, 160)
    conf = cfg(tmp_path, "di", shard_rows=4)
    args = [*tiffsink_cmd(), "ingest", str(src), "--config", str(conf), "--scheduler", address]
    client = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: _rows(tmp_path / "di") >= 8 or client.poll() is not None, 120, "rows")
    client.send_signal(signal.SIGINT)
    out, err = client.communicate(timeout=120)
    assert client.returncode == 130, err
    assert "interrupted:" in out
    rep = verify(tmp_path / "di")
    assert rep.ok, rep.problems
    assert _rows(tmp_path / "di") % 4 == 0  # whole shards only: nothing half-way
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert_same_as_local(tmp_path, src, "di")


def test_readers_on_other_hosts_read_the_published_snapshot(tmp_path: Path) -> None:
    """After a cluster run, open_dataset(snapshot=True) (no WAL, immutable) sees every
    committed row and record."""
    src = tmp_path / "src"
    corpus(src, 12)
    r = run_cli("ingest", str(src), "--config", str(cfg(tmp_path, "ds")), "--scheduler", "local")
    assert r.returncode == 0, r.stderr
    with (
        open_dataset(tmp_path / "ds", snapshot=True) as snap,
        open_dataset(tmp_path / "ds") as live,
    ):
        assert len(snap) == len(live) == 14
        assert [snap.record(i) for i in range(14)] == [live.record(i) for i in range(14)]
        np.testing.assert_array_equal(snap.take([13, 0]), live.take([13, 0]))


def _rows(dataset: Path) -> int:
    try:
        with open_dataset(dataset) as ds:
            return len(ds)
    except Exception:
        return 0
