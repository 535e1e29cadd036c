"""Publishing to object storage, against a real S3 API server on loopback (moto's
standalone server, its own process): exactly once through kill -9 and outages, one
publisher per target, readers that never see a row before it is whole, any format."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tiffsink import open_dataset
from tiffsink.config import ImageSpec, Storage
from tiffsink.dataset import DatasetWriter
from tiffsink.dataset.records import RowRecord
from tiffsink.dataset.remote import keys
from tiffsink.dataset.remote.target import open_target
from tiffsink.dataset.remote.verify import verify_remote

from conftest import run_cli, tiffsink_cmd, wait_for
from daemon_harness import DaemonProc, source_array, tiff_bytes
from s3server import CREDENTIALS, Proxy, S3Server, s3_env

SPEC = ImageSpec(height=8, width=6, dtype="uint16")
STORAGES = {
    "npy": Storage("npy"),
    "zarr": Storage("zarr", shard_rows=4),
    "zarr-zstd": Storage("zarr", shard_rows=4, compression="zstd"),
}


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    srv = S3Server()
    yield srv
    srv.stop()


@pytest.fixture
def bucket(s3: S3Server, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh bucket with the standard AWS environment pointing at the server."""
    name = f"t{abs(hash(request.node.nodeid)) % 10**12:012d}"
    with s3_env(s3.endpoint):
        yield s3.bucket(name)


def value(row: int) -> int:
    """The pixel value of row `row` in these datasets: a reader can tell any row's truth."""
    return (row * 7 + 1) % 65000


class Growing:
    """A local dataset this test appends to, a commit at a time, as the daemon would."""

    def __init__(self, directory: Path, storage: Storage) -> None:
        self.directory = directory
        self.w = DatasetWriter(directory, SPEC, storage)

    def add(self, n: int) -> None:
        recs = []
        for _ in range(n):
            row = self.w.write_row(np.full(SPEC.row_shape, value(self.w.cursor), np.uint16))
            meta = json.dumps({"well": f"W{row % 3}", "t": row})
            recs.append(
                RowRecord(row, f"/acq/f{row}.tif", 0, 100 + row, row, f"h{row}", 8, 6,
                          "uint16", 1, time.time(), meta, f"p{row}")
            )  # fmt: skip
        self.w.commit(recs, [])

    @property
    def rows(self) -> int:
        return self.w.committed

    def close(self) -> None:
        self.w.close()


def publish(dataset: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("publish", str(dataset), url, *extra)


def follower(dataset: Path, url: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*tiffsink_cmd(), "publish", str(dataset), url, "--follow", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def remote_rows(url: str) -> int:
    raw = open_target(url).get(keys.ARRAY_JSON)
    return int(json.loads(raw)["shape"][0]) if raw else 0


@pytest.mark.parametrize("fmt", list(STORAGES))
def test_a_published_copy_reads_back_equal_to_the_local_dataset(
    tmp_path: Path, bucket: str, fmt: str
) -> None:
    """`tiffsink publish` copies every committed row and record; the copy opens with the
    local API, and verify --against finds it equal."""
    g = Growing(tmp_path / "ds", STORAGES[fmt])
    g.add(10)
    url = f"{bucket}/lab/ds"
    r = publish(g.directory, url)
    assert r.returncode == 0, r.stderr
    assert "published 10 of 10" in r.stdout
    with open_dataset(url) as remote, open_dataset(g.directory) as local:
        assert len(remote) == 10
        np.testing.assert_array_equal(remote.read(0, 10), local.read(0, 10))
        np.testing.assert_array_equal(remote.take([7, 2]), local.take([7, 2]))
        assert remote.rows(well="W1").tolist() == local.rows(well="W1").tolist()
        assert remote.record(4) == local.record(4)
        assert remote.meta(5) == {"well": "W2", "t": 5}
    g.add(3)
    assert publish(g.directory, url).returncode == 0
    v = run_cli("verify", str(g.directory), "--against", url)
    assert v.returncode == 0, v.stdout
    assert "every published row equals" in v.stdout
    g.close()


def test_zarr_python_and_ome_zarr_open_the_copy_without_tiffsink(
    tmp_path: Path, bucket: str
) -> None:
    """The remote copy is an OME-Zarr 0.5 image: zarr-python reads its array through
    obstore, dask computes on it, and ome-zarr (napari's reader) finds its multiscales,
    from the URL alone."""
    g = Growing(tmp_path / "ds", STORAGES["zarr-zstd"])
    g.add(9)
    url = f"{bucket}/img"
    assert publish(g.directory, url).returncode == 0
    code = f"""
import sys, zarr, numpy as np
from obstore.store import S3Store
from zarr.storage import ObjectStore
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
s3 = S3Store("{bucket[5:]}", prefix="img/images.zarr", endpoint="{os.environ["AWS_ENDPOINT_URL"]}",
             client_options={{"allow_http": True}})
store = ObjectStore(s3, read_only=True)
a = zarr.open_array(store, path="0", mode="r")
assert "tiffsink" not in sys.modules
import dask.array as da
x = da.from_zarr(a, chunks=(4, 8, 6))
assert int(x.sum().compute()) == int(np.asarray(a[:]).sum())
node = list(Reader(parse_url("{url}/images.zarr"))())[0]
print(a.shape, int(a[8].max()), node.specs[0].__class__.__name__, node.data[0].shape)
"""
    env = {**os.environ, **CREDENTIALS}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:4] == ["(9,", "8,", "6)", str(value(8))]
    assert "Multiscales" in out.stdout and "(9, 8, 6)" in out.stdout
    g.close()


def test_kill_minus_nine_of_the_publisher_leaves_every_row_exactly_once(
    tmp_path: Path, bucket: str
) -> None:
    """Ten SIGKILLs of a following publisher at random points while rows arrive; the
    next publisher resumes from the remote shape: the copy equals the dataset."""
    rng = random.Random(3)
    g = Growing(tmp_path / "ds", STORAGES["zarr-zstd"])
    url = f"{bucket}/k"
    for _ in range(10):
        g.add(rng.randint(1, 9))
        p = follower(g.directory, url, "--tail-interval-ms", "100")
        # The kill instant is the experiment's random variable, not a synchronisation.
        threading.Event().wait(rng.uniform(0.3, 2.0))
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    g.add(5)
    r = publish(g.directory, url)
    assert r.returncode == 0, r.stderr
    assert remote_rows(url) == g.rows
    rep = verify_remote(url, g.directory)
    assert rep.ok, rep.problems
    g.close()


def test_two_publishers_for_one_target_refuse_each_other(tmp_path: Path, bucket: str) -> None:
    """A second publisher of the same dataset, or of another dataset to the same target,
    exits 2 naming the holder; the first goes on."""
    a = Growing(tmp_path / "a", STORAGES["zarr"])
    b = Growing(tmp_path / "b", STORAGES["zarr"])
    a.add(4)
    b.add(4)
    url = f"{bucket}/shared"
    first = follower(a.directory, url)
    try:
        wait_for(lambda: remote_rows(url) == 4, 30, "first publisher")
        same = publish(a.directory, url)
        assert same.returncode == 2 and "another publisher" in same.stderr
        other = publish(b.directory, url)
        assert other.returncode == 2 and "holds the lease" in other.stderr
        a.add(4)
        wait_for(lambda: remote_rows(url) == 8, 30, "first publisher going on")
    finally:
        first.send_signal(signal.SIGINT)
        assert first.wait(30) == 0
    a.close()
    b.close()


def test_a_target_holding_another_dataset_is_refused(tmp_path: Path, bucket: str) -> None:
    """Publishing into a prefix that holds another dataset's rows fails in one line."""
    a = Growing(tmp_path / "a", STORAGES["zarr"])
    b = Growing(tmp_path / "b", STORAGES["zarr"])
    a.add(5)
    b.add(6)
    url = f"{bucket}/one"
    assert publish(a.directory, url).returncode == 0
    r = publish(b.directory, url)
    assert r.returncode == 2
    assert "not this dataset's" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    a.close()
    b.close()


def test_an_outage_is_ridden_out_and_publishing_catches_up(
    tmp_path: Path, s3: S3Server, bucket: str
) -> None:
    """The server unreachable for 30 s while rows keep arriving: the publisher retries
    with backoff, then catches up; nothing is lost or doubled."""
    proxy = Proxy(s3.port)
    g = Growing(tmp_path / "ds", STORAGES["zarr-zstd"])
    g.add(6)
    url = f"{bucket}/out"
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.endpoint}
    p = subprocess.Popen(
        [
            *tiffsink_cmd(),
            "publish",
            str(g.directory),
            url,
            "--follow",
            "--tail-interval-ms",
            "100",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        wait_for(lambda: remote_rows(url) == 6, 30, "first rows")
        proxy.down()
        for _ in range(6):
            g.add(3)
            threading.Event().wait(5)  # the outage's length is the experiment, not a sync
        state = json.loads((g.directory / "publish.json").read_text())
        assert state["errors"] > 0 and state["remote_rows"] == 6
        proxy.up()
        wait_for(lambda: remote_rows(url) == g.rows, 90, "catching up")
    finally:
        p.send_signal(signal.SIGINT)
        _out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert verify_remote(url, g.directory).ok
    g.close()


def test_a_reader_polling_never_sees_a_torn_row_or_a_shrinking_shape(
    tmp_path: Path, bucket: str
) -> None:
    """While rows arrive and are published, a remote reader refreshing all along sees
    only whole rows with their true values, and a row count that never goes down."""
    g = Growing(tmp_path / "ds", STORAGES["zarr"])
    g.add(3)
    url = f"{bucket}/poll"
    assert publish(g.directory, url).returncode == 0
    p = follower(g.directory, url, "--tail-interval-ms", "100")
    seen: list[int] = []
    bad: list[str] = []
    done = threading.Event()

    def poll() -> None:
        with open_dataset(url) as ds:
            while not done.is_set():
                n = ds.refresh()
                if seen and n < seen[-1]:
                    bad.append(f"shape went from {seen[-1]} to {n}")
                seen.append(n)
                rows = ds.read(max(0, n - 5), n)
                for i, row in enumerate(rows):
                    want = value(n - len(rows) + i)
                    if not (row == want).all():
                        bad.append(f"row {n - len(rows) + i} of {n} is not whole")

    t = threading.Thread(target=poll)
    t.start()
    try:
        for _ in range(15):
            g.add(random.randint(1, 5))
            threading.Event().wait(0.2)  # the arrival rate is the experiment's
        wait_for(lambda: seen and seen[-1] == g.rows, 60, "the reader to see every row")
    finally:
        done.set()
        t.join(60)
        p.send_signal(signal.SIGINT)
        p.wait(30)
    assert bad == []
    assert len(set(seen)) > 3  # it saw the copy grow, not just its end
    g.close()


def test_snapshot_epochs_stay_identical_while_rows_arrive(tmp_path: Path, bucket: str) -> None:
    """A pinned snapshot reads the same batches for an epoch whatever is published
    meanwhile, another epoch a different order of the same rows; pickling keeps the pin."""
    import pickle

    g = Growing(tmp_path / "ds", STORAGES["zarr"])
    g.add(22)
    url = f"{bucket}/snap"
    assert publish(g.directory, url).returncode == 0
    with open_dataset(url) as ds:
        snap = ds.snapshot()
        first = [b.copy() for b in snap.batches(5, seed=7, epoch=0)]
        g.add(9)
        assert publish(g.directory, url).returncode == 0
        assert ds.refresh() == 31 and snap.refresh() == 22
        again = list(snap.batches(5, seed=7, epoch=0))
        other = np.concatenate(list(snap.batches(5, seed=7, epoch=1)))
        copy = pickle.loads(pickle.dumps(snap))
        assert len(copy) == 22
        assert [len(b) for b in first] == [5, 5, 5, 5, 2]
        for a, b in zip(first, again, strict=True):
            np.testing.assert_array_equal(a, b)
        everything = np.concatenate(first)
        assert sorted(everything[:, 0, 0].tolist()) == sorted(value(r) for r in range(22))
        assert not np.array_equal(everything, other)
        assert sorted(other[:, 0, 0].tolist()) == sorted(everything[:, 0, 0].tolist())
    g.close()


def test_a_collection_reads_two_published_datasets_as_one(tmp_path: Path, bucket: str) -> None:
    """Two instruments' copies under one prefix read as one training set: rows part by
    part, each row's `dataset` key naming its part, `rows(dataset=...)` selecting one."""
    import tiffsink

    a = Growing(tmp_path / "a", STORAGES["zarr"])
    b = Growing(tmp_path / "b", STORAGES["npy"])
    a.add(5)
    b.add(3)
    assert publish(a.directory, f"{bucket}/lab/scope-a").returncode == 0
    assert publish(b.directory, f"{bucket}/lab/scope-b").returncode == 0
    with tiffsink.open_collection(f"{bucket}/lab") as c:
        assert len(c) == 8 and c.names == [f"{bucket}/lab/scope-a", f"{bucket}/lab/scope-b"]
        assert c.rows(dataset=f"{bucket}/lab/scope-b").tolist() == [5, 6, 7]
        assert c.rows(well="W0").tolist() == [0, 3, 5]  # a's rows 0, 3; b's row 0
        assert c.meta(6)["dataset"] == f"{bucket}/lab/scope-b" and c.meta(6)["t"] == 1
        got = c.take([6, 1])
        assert got[0, 0, 0] == value(1) and got[1, 0, 0] == value(1)
        assert sum(len(x) for x in c.snapshot().batches(3)) == 8
    with tiffsink.open_collection([a.directory, f"{bucket}/lab/scope-b"]) as mixed:
        assert len(mixed) == 8
    a.close()
    b.close()


def test_publishing_to_a_file_url_works_like_s3(tmp_path: Path) -> None:
    """A file:// target (a mounted share) takes the same protocol; zarr reads it as a
    folder."""
    import zarr

    g = Growing(tmp_path / "ds", STORAGES["npy"])
    g.add(7)
    share = tmp_path / "share" / "ds"
    url = f"file://{share}"
    assert publish(g.directory, url).returncode == 0
    a = zarr.open_array(str(share / "images.zarr"), path="0", mode="r")
    assert a.shape == (7, 8, 6) and int(a[6].max()) == value(6)
    assert verify_remote(url, g.directory).ok
    with open_dataset(url) as ds:
        assert ds.rows(well="W0").tolist() == [0, 3, 6]
    g.close()


def test_verify_against_finds_a_row_that_differs(tmp_path: Path, bucket: str) -> None:
    """A published shard that no longer equals the local rows is a problem, exit 1."""
    g = Growing(tmp_path / "ds", STORAGES["zarr"])
    g.add(8)
    url = f"{bucket}/v"
    assert publish(g.directory, url).returncode == 0
    t = open_target(url)
    shard = t.get(keys.shard_key(1, 3))
    assert shard is not None
    t.put(keys.shard_key(1, 3), shard[:10] + bytes([shard[10] ^ 0xFF]) + shard[11:])
    r = run_cli("verify", str(g.directory), "--against", url)
    assert r.returncode == 1 and "shard 1 differs" in r.stdout
    g.close()


def test_the_daemon_publishes_in_the_background(tmp_path: Path, bucket: str) -> None:
    """With [publish] target set, dropped TIFFs reach the remote copy; /status and
    `tiffsink status` show the publisher, and stopping the daemon releases the lease."""
    url = f"{bucket}/daemon"
    d = DaemonProc(
        tmp_path,
        publish={"target": url, "tail_interval_ms": 200},
        dataset={"format": "zarr", "shard_rows": 4},
    ).start()
    for i in range(6):
        (d.inbox / f"f{i}.tif").write_bytes(tiff_bytes(source_array(i)))
    d.wait_rows(6)
    wait_for(lambda: remote_rows(url) == 6, 60, "the daemon's publisher")
    st = run_cli("status", str(d.dataset))
    assert "published:    6 rows to " + url in st.stdout
    assert d.stop() == 0
    lease = json.loads(open_target(url).get(keys.LEASE) or b"{}")
    assert lease.get("expires") == 0.0  # released
    assert verify_remote(url, d.dataset).ok
