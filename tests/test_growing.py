"""A file that grows by whole pages adds only its new pages, through the real daemon.

Acquisition scripts write stacks page by page: `tifffile.imwrite(path, page,
append=True)`, opening and closing the file each time, or rewriting the whole stack so
far each time (in place, or to a temp name then renamed). Each is a new file version;
since it begins with exactly the pages already committed, only the pages after them
become rows. A version that does not begin with them is a new file: all its pages are
rows. Each test waits until a version is in the index before writing the next, so every
version is seen.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tiffsink import open_dataset
from tiffsink.config import ImageSpec
from tiffsink.dataset import index
from tiffsink.decode import decode_file, pagedigest

from conftest import run_cli, wait_for
from daemon_harness import DaemonProc, source_array

SPEC = ImageSpec(height=32, width=48, dtype="uint16", pages="all")
FIRST = ImageSpec(height=32, width=48, dtype="uint16")
FORMATS: dict[str, dict[str, object]] = {
    "npy": {"format": "npy"},
    "zarr": {"format": "zarr", "compression": "none", "shard_rows": 4},
}
ALL = {"pages": "all", "height": 32, "width": 48}


def page(i: int) -> np.ndarray:
    return source_array(100 + i)


def known(d: DaemonProc, path: Path) -> bool:
    """Whether the file's current version is in the index (rows, grown or failed)."""
    st = path.stat()
    try:
        conn = sqlite3.connect(f"file:{d.dataset / 'index.sqlite'}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        return bool(index.known_versions(conn, [(str(path), st.st_size, st.st_mtime_ns)]))
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def append(path: Path, i: int) -> None:
    tifffile.imwrite(path, page(i), append=True)


def write_stack(path: Path, pages: list[np.ndarray]) -> None:
    """The whole stack in one call, as a script that rewrites the file each time does."""
    tifffile.imwrite(path, np.stack(pages), photometric="minisblack")


def rewrite_in_place(path: Path, i: int) -> None:
    write_stack(path, [page(k) for k in range(i + 1)])


def rewrite_and_rename(path: Path, i: int) -> None:
    tmp = path.with_name(f".{path.name}.part")
    write_stack(tmp, [page(k) for k in range(i + 1)])
    os.replace(tmp, path)


WRITERS = {"append": append, "rewrite": rewrite_in_place, "rename": rewrite_and_rename}


def grow(d: DaemonProc, path: Path, writer: str, pages: range) -> None:
    """Write pages one version at a time, each version ingested before the next."""
    for i in pages:
        WRITERS[writer](path, i)
        wait_for(lambda: known(d, path), 30, f"version with {i + 1} pages in the index")


def assert_each_page_once(d: DaemonProc, path: Path, n: int) -> None:
    """The file's rows are pages 0..n-1, once each, equal to the reference decode."""
    ref = dict((info.page, arr) for info, arr in decode_file(path, SPEC))
    assert len(ref) == n
    with open_dataset(d.dataset) as ds:
        recs = ds.rows_for(path)
        assert sorted(r.page for r in recs) == list(range(n)), [r.page for r in recs]
        assert len(ds) == n
        for r in recs:
            np.testing.assert_array_equal(ds.read(r.row, r.row + 1)[0], ref[r.page])
    assert run_cli("verify", str(d.dataset)).returncode == 0


@pytest.mark.parametrize("writer", list(WRITERS))
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_stack_written_page_by_page_adds_each_page_once(
    tmp_path: Path, fmt: str, writer: str
) -> None:
    """10 versions of a growing stack (appended, rewritten in place, or renamed into
    place) become 10 rows, not 55."""
    d = DaemonProc(tmp_path, image=ALL, dataset=FORMATS[fmt]).start()
    p = d.inbox / "stack.tif"
    grow(d, p, writer, range(10))
    d.wait_rows(10)
    assert d.stop() == 0
    assert_each_page_once(d, p, 10)
    assert len(d.events("batch.committed")) >= 10  # every version was seen


def test_pages_first_grown_file_adds_no_row(tmp_path: Path) -> None:
    """With pages = "first", a file whose page 0 is unchanged stays one row however it
    grows; the grown versions are still recorded."""
    d = DaemonProc(tmp_path).start()
    p = d.inbox / "stack.tif"
    grow(d, p, "append", range(4))
    assert d.stop() == 0
    with open_dataset(d.dataset) as ds:
        assert [(r.page, r.row) for r in ds.rows_for(p)] == [(0, 0)] and len(ds) == 1
        np.testing.assert_array_equal(ds.read(0, 1)[0], decode_file(p, FIRST)[0][1])


def test_a_changed_page_makes_a_new_version_of_every_page(tmp_path: Path) -> None:
    """A version that does not begin with the committed pages is a new file: all its
    pages are rows; a later version grown from it adds only its new page."""
    d = DaemonProc(tmp_path, image=ALL).start()
    p = d.inbox / "stack.tif"
    grow(d, p, "rewrite", range(3))  # pages 0..2: 3 rows
    changed = [page(0), page(50), page(2), page(3)]  # page 1 differs
    write_stack(p, changed)
    wait_for(lambda: known(d, p), 30, "the changed version")
    tifffile.imwrite(p, page(4), append=True)
    wait_for(lambda: known(d, p), 30, "the version grown from it")
    d.wait_rows(8)
    assert d.stop() == 0
    with open_dataset(d.dataset) as ds:
        pages = [r.page for r in ds.rows_for(p)]
        assert pages == [0, 1, 2, 0, 1, 2, 3, 4] and len(ds) == 8
        ref = dict((info.page, arr) for info, arr in decode_file(p, SPEC))
        for r in ds.rows_for(p)[3:]:
            np.testing.assert_array_equal(ds.read(r.row, r.row + 1)[0], ref[r.page])


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_kill_minus_nine_between_versions_neither_redoes_nor_duplicates(
    tmp_path: Path, fmt: str
) -> None:
    """kill -9 after a grown version is committed: the restart does not ingest it again;
    versions written while the daemon is down add only their new pages."""
    d = DaemonProc(tmp_path, image=ALL, dataset=FORMATS[fmt]).start()
    p = d.inbox / "stack.tif"
    grow(d, p, "append", range(3))
    d.kill_group()
    d.start()
    wait_for(lambda: d.events("scan.done"), 30, "the start scan")
    append(p, 3)
    append(p, 4)
    wait_for(lambda: known(d, p), 30, "five pages")
    d.kill_group()
    append(p, 5)  # written while the daemon is down
    d.start()
    d.wait_rows(6)
    assert d.stop() == 0
    d.start()  # and once more: nothing is redone
    wait_for(lambda: d.events("scan.done"), 30, "the start scan")
    assert d.stop() == 0
    assert not d.events("batch.committed")
    assert_each_page_once(d, p, 6)


def _digests(path: Path, spec: ImageSpec = SPEC) -> list[str]:
    return [info.digest for info, _ in decode_file(path, spec)]


@pytest.mark.parametrize("compression", [None, "lzw", "zlib"])
def test_a_page_has_one_digest_whichever_route_decodes_it(
    tmp_path: Path, compression: str | None
) -> None:
    """Page 0 alone (raw or cv2 route) and page 0 of a grown file (tifffile route) get
    the same digest, which the worker's prefix check computes too; another page not."""
    one, two = tmp_path / "one.tif", tmp_path / "two.tif"
    tifffile.imwrite(one, page(0), compression=compression)
    for i in range(2):
        tifffile.imwrite(two, page(i), compression=compression, append=True)
    [d0] = _digests(one)
    assert _digests(two)[0] == d0 and _digests(two)[1] != d0 and len(d0) == 16
    fd = os.open(two, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        assert pagedigest.committed_prefix(fd, size, [d0]) == (1, True)
        assert pagedigest.committed_prefix(fd, size, _digests(two)) == (2, False)
        assert pagedigest.committed_prefix(fd, size, [_digests(two)[1]]) is None
        assert pagedigest.committed_prefix(fd, size, [d0, d0, d0]) is None  # 3 > 2 pages
    finally:
        os.close(fd)


def test_same_bytes_in_another_shape_is_another_page(tmp_path: Path) -> None:
    """The digest covers the geometry too: the same pixel bytes as 64x96 and 96x64 differ."""
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    tifffile.imwrite(a, page(0))
    tifffile.imwrite(b, page(0).reshape(96, 64))
    assert _digests(a) != _digests(b)


def test_a_format_2_index_is_migrated_and_its_old_rows_never_match(tmp_path: Path) -> None:
    """An index from before page digests gains the column (empty for old rows) and the
    grown_versions table; a grown version of an old file is then a new version once,
    and grows by pages from there on."""
    d = DaemonProc(tmp_path, image=ALL).start()
    p = d.inbox / "stack.tif"
    grow(d, p, "append", range(2))
    assert d.stop() == 0
    conn = sqlite3.connect(d.dataset / "index.sqlite")
    conn.execute("ALTER TABLE images DROP COLUMN page_hash")
    conn.execute("DROP TABLE grown_versions")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'format_version'")
    conn.commit()
    conn.close()
    with open_dataset(d.dataset) as ds:  # a reader takes the old schema as it is
        assert [r.page for r in ds.rows_for(p)] == [0, 1]
    d.start()
    grow(d, p, "append", range(2, 4))
    d.wait_rows(6)
    assert d.stop() == 0
    conn = sqlite3.connect(d.dataset / "index.sqlite")
    version = conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
    conn.close()
    assert version == ("3",)
    with open_dataset(d.dataset) as ds:
        assert [r.page for r in ds.rows_for(p)] == [0, 1, 0, 1, 2, 3]
