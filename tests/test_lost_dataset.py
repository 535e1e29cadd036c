"""A dataset's files deleted or replaced under a running daemon: no commit into the void.

With `after_ingest = "delete"`, committing into an unlinked index and then deleting the
sources would lose the only record of their rows. Each test removes or replaces one of
the files the writer opened, then drops more files in: the daemon must commit nothing
more, keep every source, log `dataset.lost` and exit 75 (which systemd restarts).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import wait_for
from daemon_harness import DaemonProc, source_array, tiff_bytes

FORMATS: dict[str, dict[str, object]] = {
    "npy": {"format": "npy"},
    "zarr": {"format": "zarr", "compression": "none", "shard_rows": 4},
}


def _delete_index(ds: Path) -> None:
    (ds / "index.sqlite").unlink()


def _replace_index(ds: Path) -> None:
    """A consistent copy (SQLite's backup API, WAL included) moved over the original."""
    copy = ds / "index.copy"
    with sqlite3.connect(ds / "index.sqlite") as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    os.replace(copy, ds / "index.sqlite")


def _rows_path(ds: Path) -> Path:
    return ds / "images.npy" if (ds / "images.npy").exists() else ds / "images.zarr"


def _delete_rows(ds: Path) -> None:
    p = _rows_path(ds)
    shutil.rmtree(p) if p.is_dir() else p.unlink()


def _replace_rows(ds: Path) -> None:
    """A byte-for-byte copy moved into place: same content, another file."""
    p = _rows_path(ds)
    copy = p.with_name(p.name + ".copy")
    if p.is_dir():
        shutil.copytree(p, copy)
        shutil.rmtree(p)
    else:
        shutil.copy2(p, copy)
    os.replace(copy, p)


ACTS: dict[str, Callable[[Path], None]] = {
    "index-deleted": _delete_index,
    "index-replaced": _replace_index,
    "rows-deleted": _delete_rows,
    "rows-replaced": _replace_rows,
}


def _lose(tmp_path: Path, fmt: str, act: str) -> tuple[DaemonProc, list[Path]]:
    """Ingest 3 files (deleted after their commit), do `act`, drop 3 more; returns the
    daemon after its exit and the 3 later sources."""
    d = DaemonProc(tmp_path, sources={"after_ingest": "delete"}, dataset=FORMATS[fmt]).start()
    first = [d.inbox / f"a{i}.tif" for i in range(3)]
    for i, p in enumerate(first):
        p.write_bytes(tiff_bytes(source_array(i)))
    d.wait_rows(3)
    wait_for(lambda: not any(p.exists() for p in first), 30, "the first sources deleted")
    ACTS[act](d.dataset)
    later = [d.inbox / f"b{i}.tif" for i in range(3)]
    for i, p in enumerate(later):
        p.write_bytes(tiff_bytes(source_array(10 + i)))
    assert d.wait(60) == 75, d.log_path.read_text()[-3000:]
    return d, later


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_lost_dataset_file_stops_commits_keeps_sources_and_exits_75(
    tmp_path: Path, fmt: str, act: str
) -> None:
    """Deleting or replacing the index or the rows under a running daemon: exit 75 with
    a `dataset.lost` event naming the file, and not one later source deleted."""
    d, later = _lose(tmp_path, fmt, act)
    [ev] = d.events("dataset.lost")
    assert ev["level"] == "error"
    rows_name = "images.npy" if fmt == "npy" else "images.zarr"
    assert ("index.sqlite" if "index" in act else rows_name) in ev["detail"]
    assert all(p.exists() for p in later), "a source of a lost commit was deleted"
    assert not d.events("daemon.stopped")


def test_restart_after_a_replaced_index_goes_on_with_it(tmp_path: Path) -> None:
    """A consistent index moved over the original: the restart opens it and ingests (and
    then deletes) the sources the lost commit kept."""
    d, later = _lose(tmp_path, "npy", "index-replaced")
    d.start()
    rows = d.wait_rows(6)
    assert sorted(rows) == sorted(
        str(p) for p in [*later, *(d.inbox / f"a{i}.tif" for i in range(3))]
    )
    wait_for(lambda: not any(p.exists() for p in later), 30, "the later sources deleted")
    assert d.stop() == 0


def test_restart_after_a_deleted_index_refuses_and_keeps_every_source(tmp_path: Path) -> None:
    """With the index gone the rows' provenance is gone: the restart refuses in one line,
    exit 2 (a person must decide), and the kept sources are still there to re-ingest."""
    d, later = _lose(tmp_path, "npy", "index-deleted")
    d.start(wait_ready=False)
    assert d.wait(60) == 2
    out = d.log_path.read_text()
    assert "index is missing but images.npy holds 3 rows" in out and "Traceback" not in out
    assert all(p.exists() for p in later)
