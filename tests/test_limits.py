"""Hostile settings: a path_pattern that would backtrack for minutes, and every config
value at its minimum and maximum, each shown to load and to be survived by the part of
tiffsink that uses it."""

from __future__ import annotations

import math
import os
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from tiffsink import open_dataset
from tiffsink.batch import Batcher, Candidate
from tiffsink.config import Config, ImageSpec, parse_config, resources
from tiffsink.config.schema import BOUNDS, SECTIONS
from tiffsink.decode.decoder import decode_file
from tiffsink.errors import ConfigError, DecodeError
from tiffsink.feed.events import EventQueue
from tiffsink.feed.settle import Settler
from tiffsink.feed.watch import Watcher
from tiffsink.service.ingest import ingest

from conftest import run_cli, small_sections, wait_for, write_config
from daemon_harness import DaemonProc, source_array, tiff_bytes

EVIL = r"(?P<k>(a+)+)b"  # Python's re: 1.2 s at 24 a's, doubling with each one more


def test_a_backtracking_path_pattern_costs_nothing(tmp_path: Path) -> None:
    """Names of 30 a's against (a+)+b ingest at once (RE2), with and without a match."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a" * 30 + ".tif", "a" * 31 + ".tif", "aaab.tif"):
        tifffile.imwrite(src / name, np.ones((8, 10), np.uint16))
    sections = small_sections(tmp_path, metadata={"path_pattern": EVIL})
    conf = write_config(tmp_path / "cfg.toml", sections)
    r = run_cli("ingest", str(src), "--config", str(conf), timeout=40)
    assert r.returncode == 0, r.stderr
    with open_dataset(tmp_path / "dataset") as ds:
        keys = {Path(ds.record(i).source).name: ds.meta(i).get("k") for i in range(len(ds))}
    assert keys == {"a" * 30 + ".tif": None, "a" * 31 + ".tif": None, "aaab.tif": "aaa"}


# -- every number at its minimum and maximum ------------------------------------------------
NUMBERS = sorted(BOUNDS)
CHOICES = {"image.channels"}  # numbers that are a choice of values, checked as choices


def test_every_number_in_the_schema_has_bounds() -> None:
    """No int or float key escapes BOUNDS (so none escapes the tests below)."""
    numeric = {
        f"{s}.{f.name}"
        for s, cls in SECTIONS.items()
        for f in fields(cls)
        if f.type in ("int", "float")
    }
    assert numeric - CHOICES == set(BOUNDS)


@pytest.mark.parametrize("key", NUMBERS)
def test_a_number_past_its_bounds_is_refused_naming_the_key(tmp_path: Path, key: str) -> None:
    """One below the minimum and one above the maximum: ConfigError naming `section.key`."""
    section, name = key.split(".")
    lo, hi = BOUNDS[key]
    for v in (lo - 1, hi + 1, hi * 1e9):
        v = type(lo)(v) if isinstance(lo, float) or v != hi * 1e9 else int(v)
        with pytest.raises(ConfigError) as ei:
            parse_config({section: {name: v}}, tmp_path)
        assert ei.value.key == key and f"<= {hi}" in str(ei.value)


def _tiffs(src: Path) -> None:
    src.mkdir()
    for i in range(3):
        tifffile.imwrite(src / f"f{i}.tif", np.full((20, 30), i, np.uint16))


def _watch(cfg: Config, tmp: Path) -> None:
    """The observer (inotify or polling) starts, stays up and sees a file; settle works."""
    q = EventQueue()
    w = Watcher(cfg.watch, q)
    w.start()
    try:
        (cfg.watch.directory / "new.tif").write_bytes(b"x")
        if not cfg.watch.polling or cfg.watch.poll_interval_ms <= 1000:
            wait_for(lambda: q.take(100), 10, "an event")
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:  # no OverflowError in its first waits
            assert w.alive()
    finally:
        w.close()
    path = str(cfg.watch.directory / "new.tif")
    now = [0.0]
    s = Settler(cfg.watch.settle_ms, trust_mtime=False, clock=lambda: now[0])
    assert not s.offer(path, os.stat(path))
    now[0] = cfg.watch.settle_ms / 1000
    assert [p for p, _ in s.due()] == [path]


def _batch(cfg: Config, tmp: Path) -> None:
    """The batcher cuts batches at max_files and has a finite deadline."""
    b = Batcher(cfg.batch.max_files, cfg.batch.max_wait_ms)
    for i in range(3):
        b.add(Candidate(f"/in/{i}.tif", "/in", 1, 1))
    dl = b.deadline()
    assert dl is not None and math.isfinite(dl)
    assert b.ready(flush=True) and 1 <= len(b.take()) <= cfg.batch.max_files


def _image(cfg: Config, tmp: Path) -> None:
    """A good file decodes into a row of the spec, or fails as too_large at tiny limits."""
    _tiffs(tmp / "src")
    try:
        ((_, row),) = decode_file(tmp / "src" / "f1.tif", cfg.image)
    except DecodeError as e:
        assert e.reason == "too_large", e
    else:
        assert row.shape == cfg.image.row_shape


def _pipeline(cfg: Config, tmp: Path) -> None:
    """The real pipeline (workers, commit) ingests three files with this config."""
    _tiffs(tmp / "src")
    summary = ingest(cfg, [tmp / "src"], progress=False)
    assert summary.complete and summary.rows == 3, summary.lines()


SURVIVE = {"watch": _watch, "batch": _batch, "image": _image}


@pytest.mark.parametrize("end", ["min", "max"])
@pytest.mark.parametrize("key", NUMBERS)
def test_each_number_at_its_bounds_loads_and_is_survived(
    tmp_path: Path, key: str, end: str
) -> None:
    """The key at its minimum or maximum parses, and the part that uses it survives it."""
    section, name = key.split(".")
    v = BOUNDS[key][0 if end == "min" else 1]
    raw = small_sections(tmp_path, **{section: {name: v}})
    raw.pop("metrics")
    if section != "workers":
        raw["workers"] = {"count": 1}
    if section == "dataset":
        raw["dataset"].update(format="zarr", compression="zstd")
    if key == "watch.poll_interval_ms":
        raw["watch"]["polling"] = True
    cfg = parse_config(raw, tmp_path)
    assert getattr(getattr(cfg, section), name) == v or key == "workers.count"
    cfg.watch.directory.mkdir(exist_ok=True)
    SURVIVE.get(section, _pipeline)(cfg, tmp_path)


# -- the config must fit the machine ---------------------------------------------------------
GIB = 1 << 30


@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"image": {"height": 65535, "width": 65535, "channels": 3, "dtype": "float32"}}, "image"),
        ({"image": {"height": 8192, "width": 8192}, "workers": {"slots_per_worker": 1024}},
         "workers.slots_per_worker"),
        ({"image": {"height": 2048, "width": 2048},
          "dataset": {"format": "zarr", "compression": "blosc-lz4", "shard_rows": 65536}},
         "dataset.shard_rows"),
    ],
    ids=["row", "slots", "shard"],
)  # fmt: skip
def test_rows_that_cannot_fit_in_memory_are_refused_with_the_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, over: dict[str, Any], key: str
) -> None:
    """Row size x slots (and a compressed shard) past 80% of RAM: refused, bytes named."""
    monkeypatch.setattr(resources, "physical_memory", lambda: 16 * GIB)
    with pytest.raises(ConfigError) as ei:
        parse_config(over, tmp_path)
    assert ei.value.key == key
    row = ImageSpec(**{k: v for k, v in over["image"].items()}).row_bytes
    assert f"are {row} bytes each" in str(ei.value) and f"{16 * GIB} bytes" in str(ei.value)


def test_zstd_shards_written_in_place_need_no_memory_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zstd shard far larger than memory is accepted: its rows are written in place,
    so no shard is ever held whole (a blosc one of the same size is refused, above)."""
    monkeypatch.setattr(resources, "physical_memory", lambda: 16 * GIB)
    over = {"format": "zarr", "compression": "zstd", "shard_rows": 65536}
    cfg = parse_config({"image": {"height": 2048, "width": 2048}, "dataset": over}, tmp_path)
    assert cfg.dataset.storage.shard_rows == 65536


def test_the_worker_count_is_capped_by_cores_and_memory_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1024 workers on 64 cores and 4 GiB: as many as memory holds, and a warning why."""
    monkeypatch.setattr(resources, "physical_memory", lambda: 4 * GIB)
    monkeypatch.setattr(resources, "cores", lambda: 64)
    cfg = parse_config({"workers": {"count": 1024}}, tmp_path)
    budget = int(0.8 * 4 * GIB) - resources.supervisor_bytes(cfg)
    assert cfg.workers.count == budget // resources.worker_bytes(cfg) < 64
    (w,) = cfg.warnings
    assert w.startswith(f"workers.count: 1024 workers capped to {cfg.workers.count}")
    monkeypatch.setattr(resources, "physical_memory", lambda: 1024 * GIB)
    assert parse_config({"workers": {"count": 1024}}, tmp_path).workers.count == 4 * 64


def test_a_daemon_asked_for_1024_workers_starts_with_what_fits_and_says_so(
    tmp_path: Path,
) -> None:
    """workers.count = 1024: READY with the capped count, `config.adjusted` in the log."""
    d = DaemonProc(tmp_path, workers={"count": 1024}).start()
    (ready,) = d.events("daemon.ready")
    assert ready["workers"] == min(1024, 4 * resources.cores())
    (adj,) = d.events("config.adjusted")
    assert adj["key"] == "workers.count" and "capped to" in adj["detail"]
    (d.inbox / "one.tif").write_bytes(tiff_bytes(source_array(1)))
    d.wait_rows(1)
    assert d.stop() == 0


def test_a_row_too_large_for_memory_stops_the_start_in_one_line(tmp_path: Path) -> None:
    """`tiffsink run` with a 65535 x 65535 x 3 float32 spec: exit 2, one line, the bytes."""
    big = {"height": 65535, "width": 65535, "channels": 3, "dtype": "float32"}
    conf = write_config(tmp_path / "c.toml", small_sections(tmp_path, image=big))
    r = run_cli("run", "--config", str(conf), timeout=30)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "image: rows of 65535 x 65535 x 3 float32 are 51538034700 bytes" in r.stderr
