"""`tiffsink ingest`: the backfill through the worker pool, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tiffsink import open_dataset
from tiffsink.config import ImageSpec, load_config
from tiffsink.decode import decode_file
from tiffsink.errors import TiffsinkError
from tiffsink.pipeline.arena import PREFIX, sweep_stale_arenas
from tiffsink.service.ingest import ingest
from tiffsink.testing import faults

from conftest import run_cli, small_sections, tiffsink_cmd, wait_for, write_config


def make_files(
    folder: Path, n: int, start: int = 0, shape: tuple[int, int] = (64, 96)
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        p = folder / f"img_{i:04d}.tif"
        tifffile.imwrite(p, np.random.default_rng(i).integers(0, 65535, shape, dtype=np.uint16))
        out.append(p)
    return out


def config(tmp: Path, **over: dict[str, object]) -> Path:
    return write_config(tmp / "cfg.toml", small_sections(tmp, **over))


def spec_of(cfg: Path) -> ImageSpec:
    return load_config(cfg).image


def check_rows(dataset: Path, spec: ImageSpec) -> dict[str, list[int]]:
    """Every row equals the reference decode of its source; returns source -> pages."""
    out: dict[str, list[int]] = {}
    with open_dataset(dataset) as ds:
        for row in range(len(ds)):
            rec = ds.record(row)
            ref = {info.page: arr for info, arr in decode_file(rec.source, spec)}
            np.testing.assert_array_equal(
                ds.read(row, row + 1)[0], ref[rec.page], err_msg=rec.source
            )
            out.setdefault(rec.source, []).append(rec.page)
    return out


def test_ingest_every_file_once_equal_to_reference(tmp_path: Path, no_shm_leak: None) -> None:
    """A backfill of nested folders gives one row per file, equal to the single-file decode."""
    src = tmp_path / "src"
    files = make_files(src / "a", 20) + make_files(src / "b" / "c", 13, start=20)
    (src / "notes.txt").write_text("not a tiff")
    (src / "UPPER.TIF").write_bytes(files[0].read_bytes())
    cfg = config(tmp_path)
    r = run_cli("ingest", str(src), "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    rows = check_rows(tmp_path / "dataset", spec_of(cfg))
    assert sorted(rows) == sorted(str(p) for p in [*files, src / "UPPER.TIF"])
    assert all(pages == [0] for pages in rows.values())
    assert "rows added:   34" in r.stdout


def test_rerun_skips_everything_already_ingested(tmp_path: Path) -> None:
    """A second run adds no rows and reports every file as skipped (resumable)."""
    src = tmp_path / "src"
    make_files(src, 10)
    cfg = config(tmp_path)
    assert run_cli("ingest", str(src), "--config", str(cfg)).returncode == 0
    make_files(src, 3, start=10)
    r = run_cli("ingest", str(src), "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "rows added:   3" in r.stdout
    assert "skipped:      10" in r.stdout
    with open_dataset(tmp_path / "dataset") as ds:
        assert len(ds) == 13


def test_bad_files_are_recorded_and_never_stop_the_backfill(tmp_path: Path) -> None:
    """Broken TIFFs become failures with reasons; the good files are all committed; exit 0."""
    src = tmp_path / "src"
    good = make_files(src, 6)
    (src / "empty.tif").write_bytes(b"")
    (src / "random.tif").write_bytes(os.urandom(5000))
    (src / "cut.tif").write_bytes(good[0].read_bytes()[:500])
    cfg = config(tmp_path)
    r = run_cli("ingest", str(src), "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    with open_dataset(tmp_path / "dataset") as ds:
        assert len(ds) == 6
        reasons = {Path(f.source).name: f.reason for f in ds.failures()}
    assert reasons == {"empty.tif": "empty", "random.tif": "not_tiff", "cut.tif": "truncated"}
    assert "failures:     3" in r.stdout


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("segv", "decoder_crash"), ("hang", "timeout"), ("oom", "out_of_memory")],
)
def test_worker_fault_costs_one_file(
    tmp_path: Path, fault: str, reason: str, no_shm_leak: None
) -> None:
    """A worker that crashes, hangs or runs out of memory costs only its file."""
    src = tmp_path / "src"
    good = make_files(src, 12)
    victim = src / "victim_file.tif"
    victim.write_bytes(good[0].read_bytes())
    cfg = config(tmp_path, workers={"count": 2, "timeout_s": 5.0})
    env = faults.spec(**{fault: "victim_file"})
    r = run_cli("ingest", str(src), "--config", str(cfg), env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    with open_dataset(tmp_path / "dataset") as ds:
        assert sorted(ds.record(i).source for i in range(len(ds))) == sorted(map(str, good))
        assert [(f.source, f.reason) for f in ds.failures()] == [(str(victim), reason)]
    if fault != "oom":
        assert "worker.restarted" in r.stderr


def test_pages_all_gives_one_row_per_page(tmp_path: Path) -> None:
    """With pages = "all" a 5-page stack becomes 5 rows numbered 0..4."""
    src = tmp_path / "src"
    src.mkdir()
    stack = np.random.default_rng(0).integers(0, 65535, (5, 40, 40), dtype=np.uint16)
    tifffile.imwrite(src / "stack.tif", stack)
    make_files(src, 2)
    cfg = config(tmp_path, image={"pages": "all"}, workers={"slots_per_worker": 2})
    r = run_cli("ingest", str(src), "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    rows = check_rows(tmp_path / "dataset", spec_of(cfg))
    assert sorted(rows[str(src / "stack.tif")]) == [0, 1, 2, 3, 4]


def test_ctrl_c_commits_in_flight_batch_and_rerun_completes(tmp_path: Path) -> None:
    """SIGINT stops a backfill with a consistent dataset; a re-run finishes exactly once."""
    src = tmp_path / "src"
    files = make_files(src, 300, shape=(256, 256))
    cfg = config(tmp_path, batch={"max_files": 4})
    proc = subprocess.Popen(
        [*tiffsink_cmd(), "ingest", str(src), "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ds_dir = tmp_path / "dataset"

    def some_rows() -> bool:
        try:
            with open_dataset(ds_dir) as ds:
                return len(ds) >= 8
        except TiffsinkError:  # not created yet
            return False

    wait_for(some_rows, 60, "the first commits")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in out
    assert run_cli("verify", str(ds_dir)).returncode == 0
    with open_dataset(ds_dir) as ds:
        first = len(ds)
    assert 8 <= first < 300
    r = run_cli("ingest", str(src), "--config", str(cfg))
    assert r.returncode == 0
    rows = check_rows(ds_dir, spec_of(cfg))
    assert sorted(rows) == sorted(map(str, files))


def test_stale_arena_of_dead_process_is_swept(tmp_path: Path) -> None:
    """A shared-memory arena left by a killed run (dead PID) is removed at start."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = Path("/dev/shm") / f"{PREFIX}{int(dead.stdout)}-deadbeef"
    stale.write_bytes(b"x" * 10)
    mine = Path("/dev/shm") / f"{PREFIX}{os.getpid()}-alive000"
    mine.write_bytes(b"x")
    try:
        removed = sweep_stale_arenas()
        assert stale in removed and not stale.exists()
        assert mine.exists()
    finally:
        mine.unlink(missing_ok=True)
        stale.unlink(missing_ok=True)


def test_ingest_api_summary_counts(tmp_path: Path) -> None:
    """The summary counts rows, failures by reason and skipped files."""
    src = tmp_path / "src"
    make_files(src, 4)
    (src / "zero.tif").write_bytes(b"")
    cfg = load_config(config(tmp_path))
    s = ingest(cfg, [src], progress=False)
    assert (s.rows, s.ingested, dict(s.failures), s.complete) == (4, 4, {"empty": 1}, True)
    s2 = ingest(cfg, [src], progress=False)
    assert (s2.rows, s2.skipped, s2.complete) == (0, 5, True)


def test_nested_and_repeated_sources_walk_each_file_once(tmp_path: Path) -> None:
    """Sources inside another source, or given twice, are walked once: one row per file,
    nothing counted twice, and the run is complete."""
    src = tmp_path / "src"
    files = make_files(src / "a", 5) + make_files(src / "b", 4, start=5)
    cfg = load_config(config(tmp_path))
    s = ingest(cfg, [src / "b", src, src], progress=False)
    assert (s.rows, s.skipped, s.files_total, s.complete) == (9, 0, 9, True)
    with open_dataset(tmp_path / "dataset") as ds:
        assert sorted(ds.record(r).source for r in range(len(ds))) == sorted(map(str, files))


def test_status_json_reports_rows(tmp_path: Path) -> None:
    """`tiffsink status --json` reports rows, failures and that no daemon holds it."""
    src = tmp_path / "src"
    make_files(src, 3)
    (src / "zero.tif").write_bytes(b"")
    cfg = config(tmp_path)
    assert run_cli("ingest", str(src), "--config", str(cfg)).returncode == 0
    r = run_cli("status", str(tmp_path / "dataset"), "--json")
    st = json.loads(r.stdout)
    assert (st["rows"], st["failures"], st["writer_pid"]) == (3, {"empty": 1}, None)


@pytest.mark.parametrize(
    "storage",
    [{"format": "npy"}, {"format": "zarr", "compression": "none", "shard_rows": 4}],
    ids=["npy", "zarr-in-place"],
)
def test_worker_killed_mid_row_write_never_commits_a_torn_row(
    tmp_path: Path, no_shm_leak: None, storage: dict[str, object]
) -> None:
    """A worker SIGKILLed halfway through writing a row at its final place (twice: the
    retry too) leaves that row torn on disk, uncommitted: every committed row is whole and
    equals its source's decode, the file is one failure, and verify finds the dataset
    consistent."""
    src = tmp_path / "src"
    good = make_files(src, 30)
    victim = src / "victim_file.tif"
    victim.write_bytes(good[0].read_bytes())
    cfg = config(tmp_path, workers={"count": 2}, dataset=storage)
    r = run_cli("ingest", str(src), "--config", str(cfg), env=faults.spec(torn_write="victim"))
    assert r.returncode == 0, r.stderr
    rows = check_rows(tmp_path / "dataset", spec_of(cfg))  # every row against decode_file
    assert sorted(rows) == sorted(map(str, good))
    with open_dataset(tmp_path / "dataset") as ds:
        assert [(f.source, f.reason) for f in ds.failures()] == [(str(victim), "decoder_crash")]
    v = run_cli("verify", str(tmp_path / "dataset"))
    assert v.returncode == 0, v.stdout


def test_workers_that_cannot_start_stop_the_run_without_failing_files(tmp_path: Path) -> None:
    """Workers that keep dying before they are ready (a broken install) end the run, once
    the retry bound passes, with exit 75 (a restart may cure it, a config error is 2) and
    a message saying so; no file is recorded as failed for it."""
    src = tmp_path / "src"
    make_files(src, 5)
    cfg = config(tmp_path)
    env = faults.spec(worker_start="exit", start_give_up_s="1")
    r = run_cli("ingest", str(src), "--config", str(cfg), env=env)
    assert r.returncode == 75, r.stderr
    assert "could not start for" in r.stderr
    assert "a worker process exited with code 3 before it was ready" in r.stderr
    with open_dataset(tmp_path / "dataset") as ds:
        assert len(ds) == 0 and ds.failures() == []
