"""The zarr format as users meet it: OME-Zarr 0.5 valid, read by zarr-python, napari-style
readers and dask as it is, crash-safe under kill -9 with a zarr-python reader alongside."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import zarr

from tiffsink import open_dataset
from tiffsink.config import ImageSpec, Storage
from tiffsink.dataset.formats.zarrcommon import codec, shard
from tiffsink.dataset.verify import verify
from tiffsink.dataset.writer import DatasetWriter
from tiffsink.errors import DatasetError
from tiffsink.testing import faults

from conftest import run_cli, wait_for
from daemon_harness import DaemonProc
from test_durability import Arrivals, check_dataset, no_leftovers

SPEC = ImageSpec(height=3, width=4, dtype="uint16")
RGB = ImageSpec(height=3, width=4, channels=3, dtype="uint8")
ZC = "blosc-lz4"
ZARR = Storage("zarr", shard_rows=4, compression=ZC)


def filled(spec: ImageSpec, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    return [rng.integers(1, 200, spec.row_shape).astype(spec.dtype) for _ in range(n)]


def make(d: Path, spec: ImageSpec, n: int, storage: Storage = ZARR) -> list[np.ndarray]:
    rows = filled(spec, n)
    with DatasetWriter(d, spec, storage) as w:
        recs = []
        for r in rows:
            row = w.write_row(r)
            recs.append(_rec(row))
        w.commit(recs, [])
    return rows


def _rec(row: int):  # type: ignore[no-untyped-def]
    from tiffsink.dataset.index import RowRecord

    return RowRecord(row, f"/in/f{row}.tif", 0, 1, 1, "x", 3, 4, "u2", 1, 1.0)


def test_the_image_group_is_valid_ome_zarr_0_5(tmp_path: Path) -> None:
    """ome-zarr-models validates the group: axes row, c, y, x, and a dataset at path 0."""
    from ome_zarr_models.v05 import Image

    make(tmp_path, RGB, 6)
    img = Image.from_zarr(zarr.open_group(tmp_path / "images.zarr", mode="r"))
    ms = img.attributes.ome.multiscales[0]
    assert [a.name for a in ms.axes] == ["row", "c", "y", "x"]
    assert [a.type for a in ms.axes] == ["row", "channel", "space", "space"]
    assert ms.datasets[0].path == "0"


def test_ome_zarr_py_reads_it_as_napari_ome_zarr_does(tmp_path: Path) -> None:
    """ome-zarr-py's Reader (what the napari-ome-zarr plugin calls) finds one multiscale
    image with our axes, and its data are the rows."""
    pytest.importorskip("ome_zarr", reason="ome-zarr is installed by the README's set-up")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    rows = make(tmp_path, RGB, 5)
    nodes = list(Reader(parse_url(str(tmp_path / "images.zarr")))())
    image = next(n for n in nodes if any(isinstance(s, Multiscales) for s in n.specs))
    assert [a["name"] for a in image.metadata["axes"]] == ["row", "c", "y", "x"]
    (level0,) = image.data
    np.testing.assert_array_equal(np.asarray(level0), np.array(rows).transpose(0, 3, 1, 2))


def test_zarr_python_reads_the_rows_channels_first(tmp_path: Path) -> None:
    """zarr-python sees shape (N, 3, H, W), dimension names, and the written pixels."""
    rows = make(tmp_path, RGB, 6)
    arr = zarr.open_array(tmp_path / "images.zarr" / "0", mode="r")
    assert arr.shape == (6, 3, 3, 4)
    assert arr.metadata.dimension_names == ("row", "c", "y", "x")
    np.testing.assert_array_equal(arr[:], np.array(rows).transpose(0, 3, 1, 2))
    assert arr.shards == (4, 3, 3, 4) and arr.chunks == (1, 3, 3, 4)


def test_dask_reads_the_array_as_it_is(tmp_path: Path) -> None:
    """dask.array.from_zarr gives the same rows (dask and xarray users need nothing else)."""
    da = pytest.importorskip("dask.array")
    rows = make(tmp_path, SPEC, 9)
    got = da.from_zarr(str(tmp_path / "images.zarr" / "0")).compute()
    np.testing.assert_array_equal(got, np.array(rows))


def test_recovery_cuts_shards_and_chunks_past_the_committed_rows(tmp_path: Path) -> None:
    """Rows made durable but never committed (crash before the index) are cut on open."""
    rows = make(tmp_path, SPEC, 5)
    w = DatasetWriter(tmp_path, SPEC, ZARR)
    for r in filled(SPEC, 6):
        w.write_row(r)
    w.store.make_durable(5, 6)  # shards 1 and 2 now hold rows 5..10, uncommitted
    w.conn.close()
    w.store.close()
    import os

    os.close(w._lock_fd)
    assert (tmp_path / "images.zarr/0/c/2").exists()
    with DatasetWriter(tmp_path, SPEC, ZARR) as w2:
        assert w2.committed == 5
    assert not (tmp_path / "images.zarr/0/c/2").exists()
    present = shard.read_present(tmp_path / "images.zarr/0/c/1/0/0", 4)
    assert present == [True, False, False, False]
    assert verify(tmp_path).ok
    with open_dataset(tmp_path) as ds:
        np.testing.assert_array_equal(ds.read(0, len(ds)), np.array(rows))


def test_a_torn_committed_shard_is_refused_naming_it(tmp_path: Path) -> None:
    """A last shard cut short (committed rows lost under us) is an error naming the file."""
    make(tmp_path, SPEC, 6)
    path = tmp_path / "images.zarr/0/c/1/0/0"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetError, match=r"c/1/0/0.*torn shard"):
        DatasetWriter(tmp_path, SPEC, ZARR)
    rep = verify(tmp_path)
    assert any("c/1/0/0" in p for p in rep.problems)


DENSE = Storage("zarr", shard_rows=4, compression="none")


def test_uncompressed_shards_are_the_shards_written_whole(tmp_path: Path) -> None:
    """A full shard written in place by rows is byte for byte `shard.build` of its rows,
    the file a cluster task writes whole."""
    rows = make(tmp_path, SPEC, 4, DENSE)
    built = shard.build([codec.to_chunk(r).tobytes() for r in rows], 4)
    assert (tmp_path / "images.zarr/0/c/0/0/0").read_bytes() == built


def test_uncompressed_rows_past_the_committed_ones_are_cleared_on_open(tmp_path: Path) -> None:
    """Rows written into the last shard but never committed are zeroed on open, the
    committed ones stay, and zarr-python reads exactly the committed rows."""
    rows = make(tmp_path, SPEC, 5, DENSE)
    w = DatasetWriter(tmp_path, SPEC, DENSE)
    for r in filled(SPEC, 6):
        w.write_row(r)  # rows 5..10: the rest of shard 1 and a new shard 2
    w.store.make_durable(5, 6)
    w.conn.close()
    w.store.close()
    import os

    os.close(w._lock_fd)
    with DatasetWriter(tmp_path, SPEC, DENSE) as w2:
        assert w2.committed == 5 and not w2.store.has_pending(5)
    assert not (tmp_path / "images.zarr/0/c/2").exists()
    body = (tmp_path / "images.zarr/0/c/1/0/0").read_bytes()[: 4 * SPEC.row_bytes]
    assert not body[SPEC.row_bytes :].strip(b"\0")  # slots 2..4 of shard 1: zeros
    assert verify(tmp_path).ok
    got = np.asarray(zarr.open_array(tmp_path / "images.zarr/0", mode="r")[:])
    np.testing.assert_array_equal(got, np.array(rows))


def test_a_last_shard_written_whole_is_laid_out_in_place_again(tmp_path: Path) -> None:
    """A partly filled last shard packed by a cluster task (index past its chunks) is
    rewritten to the in-place layout on open, keeping its rows, so that rows can be
    written after them."""
    rows = make(tmp_path, SPEC, 6, DENSE)
    path = tmp_path / "images.zarr/0/c/1/0/0"
    path.write_bytes(shard.build([codec.to_chunk(r).tobytes() for r in rows[4:]], 4))
    more = filled(SPEC, 9)[:3]
    with DatasetWriter(tmp_path, SPEC, DENSE) as w:
        recs = [_rec(w.write_row(r)) for r in more]
        w.commit(recs, [])
    assert verify(tmp_path).ok
    with open_dataset(tmp_path) as ds:
        np.testing.assert_array_equal(ds.read(0, len(ds)), np.array(rows + more))


@pytest.mark.parametrize("storage", [DENSE, ZARR], ids=["none", ZC])
def test_a_zarr_json_a_power_cut_left_empty_is_rebuilt_on_open(
    tmp_path: Path, storage: Storage
) -> None:
    """The shape's rewrites are not fsynced: an empty array zarr.json (a power cut after
    the rename) is rebuilt by the next writer with the index's row count."""
    rows = make(tmp_path, SPEC, 6, storage)
    (tmp_path / "images.zarr/0/zarr.json").write_bytes(b"")
    with DatasetWriter(tmp_path, SPEC, storage) as w:
        assert w.committed == 6
    assert verify(tmp_path).ok
    got = np.asarray(zarr.open_array(tmp_path / "images.zarr/0", mode="r")[:])
    np.testing.assert_array_equal(got, np.array(rows))


def test_the_shard_format_round_trips_through_zarr_python(tmp_path: Path) -> None:
    """A shard built here with absent chunks reads back in zarr-python as fill values."""
    make(tmp_path, SPEC, 0, Storage("zarr", shard_rows=4, compression="none"))
    meta = json.loads((tmp_path / "images.zarr/0/zarr.json").read_text())
    meta["shape"][0] = 4
    (tmp_path / "images.zarr/0/zarr.json").write_text(json.dumps(meta))
    a, b = np.full((3, 4), 7, "<u2"), np.full((3, 4), 9, "<u2")
    out = tmp_path / "images.zarr/0/c/0/0/0"
    out.parent.mkdir(parents=True)
    out.write_bytes(shard.build([a.tobytes(), b.tobytes()], 4))
    got = zarr.open_array(tmp_path / "images.zarr/0", mode="r")[:]
    np.testing.assert_array_equal(got[0], a)
    np.testing.assert_array_equal(got[1], b)
    assert not got[2:].any()


def test_status_and_verify_cli_on_a_zarr_dataset(tmp_path: Path) -> None:
    """status names the format; verify passes and says zarr."""
    make(tmp_path, SPEC, 5)
    st = json.loads(run_cli("status", str(tmp_path), "--json").stdout)
    assert st["format"] == "zarr" and st["rows"] == 5
    r = run_cli("verify", str(tmp_path))
    assert r.returncode == 0 and "(zarr)" in r.stdout, r.stdout


# -- the daemon, killed, with a zarr-python reader alongside ------------------------------

READER = r"""
import sys, time
from pathlib import Path
import numpy as np
import zarr
d = Path(sys.argv[1]); stop = Path(sys.argv[2])
last = seen = 0
while not stop.exists():
    try:
        a = zarr.open_array(d / "images.zarr" / "0", mode="r")
    except Exception:
        time.sleep(0.01)  # not created yet
        continue
    n = a.shape[0]
    if n < last:
        sys.exit(f"shape went backwards: {last} -> {n}")
    if n:
        rows = a[:].reshape(n, -1)
        empty = np.nonzero(~rows.any(axis=1))[0]
        if empty.size:
            sys.exit(f"row {empty[0]} of {n} is a fill-value row")
    last, seen = n, seen + 1
print(last, seen)
"""


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_kill_minus_nine_with_a_zarr_reader_alongside(tmp_path: Path, compression: str) -> None:
    """12 SIGKILLs of a zarr daemon (rows written in place, or shards rewritten whole):
    every file exactly once, and a zarr-python reader polling all along never sees an
    unwritten row or a shrinking shape."""
    rng = random.Random(5)
    storage = {"format": "zarr", "shard_rows": 4, "compression": compression}
    d = DaemonProc(tmp_path, dataset=storage)
    stop = tmp_path / "stop-reader"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(d.dataset), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        arrivals = Arrivals(d.inbox, n=50, seed=5).start()
        for _ in range(12):
            d.start(wait_ready=rng.random() < 0.7)
            wait_for(lambda: d.proc is not None and d.proc.pid > 0, 5, "process")
            threading.Event().wait(rng.uniform(0.05, 1.2))  # the kill instant is random
            d.kill_group()
        arrivals.join()
        d.start()
        d.wait_rows(len(arrivals.paths), timeout=120)
        assert d.stop() == 0
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    assert int(out.split()[1]) > 10, "the reader did not overlap the daemon"
    check_dataset(d, arrivals.paths)
    no_leftovers(d)


# -- export --------------------------------------------------------------------------------


def test_export_round_trips_rows_index_and_failures(tmp_path: Path) -> None:
    """npy -> zarr -> npy keeps every row, record and failure; both copies verify."""
    from tiffsink.dataset.index import FailureRecord

    src = tmp_path / "src"
    rows = make(src, RGB, 7, Storage())
    with DatasetWriter(src, RGB) as w:
        w.commit([], [FailureRecord("/in/bad.tif", 5, 6, "corrupt", "not a TIFF", 2.0)])
    r = run_cli("export", str(src), str(tmp_path / "z"), "--format", "zarr", "--shard-rows", "3")
    assert r.returncode == 0, r.stderr
    r = run_cli("export", str(tmp_path / "z"), str(tmp_path / "n"), "--format", "npy")
    assert r.returncode == 0, r.stderr
    for d in ("z", "n"):
        with open_dataset(tmp_path / d) as ds:
            np.testing.assert_array_equal(ds.read(0, len(ds)), np.array(rows))
            assert ds.record(6).source == "/in/f6.tif"
            assert [f.detail for f in ds.failures()] == ["not a TIFF"]
        assert verify(tmp_path / d).ok


def test_export_killed_mid_copy_resumes_without_doubling(tmp_path: Path) -> None:
    """SIGKILL after the copy's first commit; the rerun copies only the rest."""
    src = tmp_path / "src"
    make(src, SPEC, 200, Storage())
    out = tmp_path / "out"
    env = faults.spec(crash_at="after_header_rewrite")  # dies right after the first commit
    r = run_cli("export", str(src), str(out), "--format", "zarr", env=env)
    assert r.returncode == -9, r.stderr
    with open_dataset(out) as ds:
        assert 0 < len(ds) < 200
    r = run_cli("export", str(src), str(out), "--format", "zarr")
    assert r.returncode == 0, r.stderr
    assert "200 rows" in r.stdout and "(136 copied now)" in r.stdout, r.stdout
    assert verify(out).ok


def test_export_refuses_to_resume_into_a_copy_of_another_dataset(tmp_path: Path) -> None:
    """A target holding other rows is refused, naming the first row that differs."""
    make(tmp_path / "a", SPEC, 3, Storage())
    with DatasetWriter(tmp_path / "b", SPEC, ZARR) as w:
        w.write_row(filled(SPEC, 1)[0])
        from tiffsink.dataset.index import RowRecord

        w.commit([RowRecord(0, "/other.tif", 0, 1, 1, "x", 3, 4, "u2", 1, 1.0)], [])
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    r = run_cli("export", a, b, "--format", "zarr", "--shard-rows", "4", "--compression", "zstd")
    assert r.returncode == 2
    assert "--compression: it has 'blosc-lz4'" in r.stderr  # not a copy target
    r = run_cli("export", a, b, "--format", "zarr", "--shard-rows", "4", "--compression", ZC)
    assert r.returncode == 2
    assert "row 0 is /other.tif" in r.stderr


def test_a_zarr_image_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    """An unwritable tmp/ (a read-only mount) names images.zarr and the reason."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(tmp)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here ({r.stderr.strip()})")
    try:
        with pytest.raises(DatasetError, match=r"images.zarr: cannot create the zarr image.*"):
            DatasetWriter(tmp_path, SPEC, ZARR)
    finally:
        subprocess.run(["umount", "-l", str(tmp)], check=False)


ZSTD = Storage("zarr", shard_rows=4, compression="zstd", compression_level=1)
FLAT = ImageSpec(height=256, width=256, dtype="uint16")


def test_zstd_rows_are_written_in_place_and_cost_only_their_compressed_size(
    tmp_path: Path,
) -> None:
    """zstd rows go into fixed slots (frame, then a skippable frame to the slot's end)
    under an index that never changes: zarr-python reads them, and the unwritten rest of
    each slot stays a hole, so a shard takes about its compressed size on disk."""
    rows = [np.full(FLAT.row_shape, i, np.uint16) for i in range(6)]  # compress ~1000x
    with DatasetWriter(tmp_path, FLAT, ZSTD) as w:
        w.commit([_rec(w.write_row(r)) for r in rows], [])
        slot = w.store.slot_bytes
    first = tmp_path / "images.zarr/0/c/0/0/0"
    index = first.read_bytes()[4 * slot :]
    assert index == shard.dense_index(4, slot)  # every slot named whole, from the start
    assert first.stat().st_size == 4 * slot + len(index)
    assert first.stat().st_blocks * 512 < FLAT.row_bytes  # holes: four rows in < one row
    got = np.asarray(zarr.open_array(tmp_path / "images.zarr/0", mode="r")[:])
    np.testing.assert_array_equal(got, np.array(rows))
    assert verify(tmp_path).ok


def test_an_older_zstd_dataset_is_taken_over_as_it_is(tmp_path: Path) -> None:
    """A zstd dataset an older version wrote (a packed last shard, pending.rows beside
    it) opens with its rows: the last shard is laid out in slots again, pending.rows
    goes, and new rows follow the old ones."""
    rows = make(tmp_path, SPEC, 6, ZSTD)
    enc = codec.compressor(ZSTD)
    packed = shard.build([codec.encode(r, enc) for r in rows[4:]], 4)
    (tmp_path / "images.zarr/0/c/1/0/0").write_bytes(packed)  # as the old commit wrote it
    (tmp_path / "pending.rows").write_bytes(b"\1" * 100)  # an old run's uncommitted slots
    more = filled(SPEC, 9)[:3]
    with DatasetWriter(tmp_path, SPEC, ZSTD) as w:
        w.commit([_rec(w.write_row(r)) for r in more], [])
    assert not (tmp_path / "pending.rows").exists()
    assert verify(tmp_path).ok
    got = np.asarray(zarr.open_array(tmp_path / "images.zarr/0", mode="r")[:])
    np.testing.assert_array_equal(got, np.array(rows + more))


@pytest.mark.parametrize("kind", ["flat", "noise", "mixed"])
def test_a_full_zstd_shard_is_handed_out_packed(tmp_path: Path, kind: str) -> None:
    """The full shard a publisher copies holds each row's zstd frame alone, without the
    skippable frame that padded its slot (flat rows make RLE blocks, noise raw ones)."""
    rng = np.random.default_rng(1)
    noise = [rng.integers(0, 65535, FLAT.row_shape).astype(np.uint16) for _ in range(4)]
    flat = [np.full(FLAT.row_shape, 7, np.uint16) for _ in range(4)]
    rows = {"flat": flat, "noise": noise, "mixed": [flat[0], noise[1], flat[2], noise[3]]}[kind]
    with DatasetWriter(tmp_path, FLAT, ZSTD) as w:
        w.commit([_rec(w.write_row(r)) for r in rows], [])
    with open_dataset(tmp_path) as ds:
        packed = ds.full_shard(0, 4)
    assert packed is not None
    chunks = shard.parse(packed, 4)
    enc = codec.compressor(ZSTD)
    assert chunks == [codec.encode(r, enc) for r in rows]


def test_a_full_disk_while_raising_the_shape_leaves_it_lagging_until_the_next_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC writing zarr.json after the index commit is not a crash: the rows stay
    committed, readers see the old shape, and the next commit raises it."""
    from tiffsink.dataset.formats.zarrcommon import array
    from tiffsink.errors import DatasetFullError

    rows = make(tmp_path, SPEC, 3, ZSTD)
    real, calls = array.write_atomic, []

    def full_once(*args: object, **kw: object) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise DatasetFullError(tmp_path, "ENOSPC (No space left on device)")
        real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(array, "write_atomic", full_once)
    more = filled(SPEC, 7)[:3]
    with DatasetWriter(tmp_path, SPEC, ZSTD) as w:
        w.commit([_rec(w.write_row(r)) for r in more[:2]], [])
        assert w.committed == 5
        assert zarr.open_array(tmp_path / "images.zarr/0", mode="r").shape[0] == 3
        with open_dataset(tmp_path) as ds:
            assert len(ds) == 3
        w.commit([_rec(w.write_row(more[2]))], [])
    got = np.asarray(zarr.open_array(tmp_path / "images.zarr/0", mode="r")[:])
    np.testing.assert_array_equal(got, np.array(rows + more))
    assert verify(tmp_path).ok
