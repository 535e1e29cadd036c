"""Hostile settings: a path_pattern that would backtrack for minutes, and every config
value at its minimum and maximum, each shown to load and to be survived by the part of
tiffsink that uses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from tiffsink import open_dataset

from conftest import run_cli, small_sections, write_config

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
