"""bench/peers_bench.py runs end to end on a tiny corpus: every contender (tiffsink and
each peer Zarr writer) writes output that zarr-python reads back as the right rows."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PEER_MODULES = ("acquire_zarr", "tensorstore")


def test_every_contender_writes_verified_output(tmp_path: Path) -> None:
    """16 files, one round, both codecs: each contender is timed and its rows verified."""
    missing = [m for m in PEER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"peers extra not installed ({', '.join(missing)}): pip install -e '.[peers]'")
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "peers_bench.py"), "--files", "16", "--rounds", "1",
         "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["skipped"] == {}
    assert set(res["results"]) == {"none", "zstd"}
    for codec, per in res["results"].items():
        contenders = per["contenders"]
        assert set(contenders) == {"tiffsink", "acquire-zarr", "tensorstore", "dask"}, codec
        for name, c in contenders.items():
            assert c["verified"] and c["files_per_s"] > 0, (codec, name, c.get("errors"))
        assert per["tiffsink_over_best_peer"] > 0
