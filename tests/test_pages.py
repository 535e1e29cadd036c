"""Which pages are rows: a file's plane pages; overview and mask pages are counted, never
silently lost; a plane page no reader decodes fails the file naming the page; the
outcome is the same for every workers.count and slots_per_worker."""

from __future__ import annotations

import json
import os
import sqlite3
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from tiffsink import open_dataset
from tiffsink.config import ImageSpec
from tiffsink.decode import Decoder, decode_file
from tiffsink.decode.safeopen import open_source
from tiffsink.errors import DecodeError
from tiffwriter import write_classic

from conftest import run_cli, small_sections, write_config

H, W = 12, 16
SPEC = ImageSpec(height=H, width=W, dtype="uint16", pages="all", interpolation="nearest")


def pyramid(p: Path) -> np.ndarray:
    """A GeoTIFF-like file: plane, its mask, an overview, the overview's mask."""
    plane = np.arange(H * W, dtype=np.uint16).reshape(H, W)
    with tifffile.TiffWriter(p) as tw:
        tw.write(plane, metadata=None)
        tw.write(np.ones((H, W), bool), subfiletype=4, metadata=None)
        tw.write(plane[::2, ::2], subfiletype=1, metadata=None)
        tw.write(np.ones((H // 2, W // 2), bool), subfiletype=5, metadata=None)
    return plane


def stack(p: Path, kinds: list[int]) -> list[np.ndarray]:
    """Pages of the given NewSubfileTypes, page i filled with i + 1 (masks are 1-bit)."""
    pages = [np.full((H, W), i + 1, bool if k & 4 else np.uint16) for i, k in enumerate(kinds)]
    with tifffile.TiffWriter(p) as tw:
        for a, kind in zip(pages, kinds, strict=True):
            tw.write(a, subfiletype=kind, metadata=None)
    return pages


def test_overview_and_mask_pages_are_not_rows(tmp_path: Path) -> None:
    """Only the plane page becomes a row; the decoder counts 1 overview and 2 masks."""
    plane = pyramid(tmp_path / "geo.tif")
    p = str(tmp_path / "geo.tif")
    fd, st = open_source(p, None)
    try:
        res = Decoder(SPEC).decode(fd, p, st.st_size, 0, [np.empty((H, W), np.uint16)] * 4)
    finally:
        os.close(fd)
    assert (res.pages_total, [i.page for i in res.pages]) == (1, [0])
    assert (res.overview, res.mask) == (1, 2)
    ((_, row),) = decode_file(p, SPEC)
    np.testing.assert_array_equal(row, plane)


def test_skipped_pages_are_in_the_index_and_the_log(tmp_path: Path) -> None:
    """The row's meta says overview_pages/mask_pages (queryable); file.decoded says so too."""
    src = tmp_path / "src"
    src.mkdir()
    pyramid(src / "geo.tif")
    stack(src / "plain.tif", [0, 0])
    over: dict[str, Any] = {"image": {"pages": "all"}, "log": {"level": "debug"}}
    conf = write_config(tmp_path / "cfg.toml", small_sections(tmp_path, **over))
    r = run_cli("ingest", str(src), "--config", str(conf))
    assert r.returncode == 0, r.stderr
    with open_dataset(tmp_path / "dataset") as ds:
        (row,) = ds.rows(mask_pages=2)
        assert ds.record(int(row)).source.endswith("geo.tif")
        meta = ds.meta(int(row))
        assert (meta["overview_pages"], meta["mask_pages"]) == (1, 2)
        assert len(ds) == 3
    events = [json.loads(x) for x in r.stderr.splitlines() if '"file.decoded"' in x]
    geo = [e for e in events if e["path"].endswith("geo.tif")]
    assert [(e["overview_pages"], e["mask_pages"], e["pages_total"]) for e in geo] == [(1, 2, 1)]


def test_planes_after_a_thumbnail_are_the_rows(tmp_path: Path) -> None:
    """A reduced page 0 before full planes: the rows are pages 1 and 2; "first" takes 1."""
    pages = stack(tmp_path / "t.tif", [1, 0, 0])
    got = decode_file(tmp_path / "t.tif", SPEC)
    assert [i.page for i, _ in got] == [1, 2]
    np.testing.assert_array_equal(got[1][1], pages[2])
    first = decode_file(tmp_path / "t.tif", ImageSpec(height=H, width=W, dtype="uint16"))
    assert [i.page for i, _ in first] == [1]


@pytest.mark.parametrize("kinds", [[1], [1, 1], [5, 4]])
def test_where_no_page_is_a_plane_page_0_is(tmp_path: Path, kinds: list[int]) -> None:
    """A lone reduced page (a camera's JPEG-sized TIFF), or only overviews and masks:
    page 0."""
    stack(tmp_path / "r.tif", kinds)
    assert [i.page for i, _ in decode_file(tmp_path / "r.tif", SPEC)] == [0]


def test_an_old_style_reduced_subfiletype_is_an_overview(tmp_path: Path) -> None:
    """SubfileType (255) 2 means reduced resolution, as libtiff reads it."""
    with tifffile.TiffWriter(tmp_path / "o.tif") as tw:
        tw.write(np.ones((H, W), np.uint16), metadata=None)
        tw.write(np.ones((H, W), np.uint16), metadata=None, extratags=[(255, 3, 1, 2, True)])
    assert [i.page for i, _ in decode_file(tmp_path / "o.tif", SPEC)] == [0]


def _refused(monkeypatch: pytest.MonkeyPatch, pages: set[int], pillow: bool) -> None:
    """tifffile (and, unless `pillow`, Pillow) refuse these pages."""
    import tiffsink.decode.decoder as decoder
    import tiffsink.decode.fallback as fallback

    real = decoder.page_samples

    def samples(path: str, size: int, i: int, page: Any, limits: Any) -> Any:
        if i in pages:
            raise DecodeError(path, "unsupported_layout", "1 samples, photometric test")
        return real(path, size, i, page, limits)

    monkeypatch.setattr(decoder, "page_samples", samples)
    if not pillow:
        monkeypatch.setattr(fallback, "pillow_page", lambda *a: None)


def test_a_plane_no_reader_decodes_fails_naming_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Page 1 refused by every reader: the file fails, and the detail names page 1."""
    stack(tmp_path / "s.tif", [0, 0, 0])
    _refused(monkeypatch, {1}, pillow=False)
    with pytest.raises(DecodeError) as e:
        decode_file(tmp_path / "s.tif", SPEC)
    assert e.value.reason == "unsupported_layout"
    assert e.value.detail == "page 1: 1 samples, photometric test"


def test_a_fallback_reader_never_shortens_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only libtiff (page 0) reads it: still 3 pages in total, and page 1 then fails."""
    pages = stack(tmp_path / "s.tif", [0, 0, 0])
    _refused(monkeypatch, {0, 1, 2}, pillow=False)
    p = str(tmp_path / "s.tif")
    fd, st = open_source(p, None)
    try:
        out = np.empty((H, W), np.uint16)
        res = Decoder(SPEC).decode(fd, p, st.st_size, 0, [out])
    finally:
        os.close(fd)
    assert res.pages_total == 3 and [i.page for i in res.pages] == [0]
    np.testing.assert_array_equal(out, pages[0])
    with pytest.raises(DecodeError, match="page 1"):
        decode_file(p, SPEC)


def test_pillow_decodes_the_pages_tifffile_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every plane tifffile refuses comes from Pillow, page for page."""
    pages = stack(tmp_path / "s.tif", [0, 1, 0])
    _refused(monkeypatch, {0, 2}, pillow=True)
    got = decode_file(tmp_path / "s.tif", SPEC)
    assert [i.page for i, _ in got] == [0, 2]
    np.testing.assert_array_equal(got[1][1], pages[2])


def wrong_strip_count(p: Path, cut: int = 0) -> np.ndarray:
    """Like Pillow's tiff_wrong_bits_per_sample.tiff: uncompressed RGBA, one BitsPerSample
    value for 4 samples, and a StripByteCounts far past the end of the file."""
    rgba = np.random.default_rng(3).integers(0, 256, (53, 52, 4), dtype=np.uint8)
    tags = [(256, 3, [52]), (257, 3, [53]), (258, 3, [8]), (262, 3, [2]), (277, 3, [4]),
            (278, 3, [53]), (338, 3, [2])]  # fmt: skip
    write_classic(p, tags, rgba.tobytes())
    data = bytearray(p.read_bytes())
    (n,) = struct.unpack_from("<H", data, 8)
    for k in range(n):
        if struct.unpack_from("<H", data, 10 + 12 * k)[0] == 279:
            struct.pack_into("<I", data, 10 + 12 * k + 8, 10_000_000)
    p.write_bytes(bytes(data[: len(data) - cut]))
    return rgba


def test_a_bogus_uncompressed_strip_count_is_recomputed(tmp_path: Path) -> None:
    """The strip holds what the image size needs, as libtiff reads it: a row, not truncated."""
    rgba = wrong_strip_count(tmp_path / "w.tif")
    spec = ImageSpec(height=53, width=52, channels=3, dtype="uint8")
    ((info, row),) = decode_file(tmp_path / "w.tif", spec)
    assert (info.height, info.width, info.channels) == (53, 52, 4)
    np.testing.assert_array_equal(row, rgba[..., :3])


def test_a_recomputed_strip_still_past_the_end_is_truncated(tmp_path: Path) -> None:
    """When the image's bytes are really missing, the file is `truncated`."""
    wrong_strip_count(tmp_path / "w.tif", cut=100)
    with pytest.raises(DecodeError) as e:
        decode_file(tmp_path / "w.tif", ImageSpec(height=8, width=8, dtype="uint8"))
    assert e.value.reason == "truncated"


def corpus(src: Path) -> None:
    """Files whose rows depend on pages being handled one by one."""
    src.mkdir()
    pyramid(src / "geo.tif")
    stack(src / "thumb_first.tif", [1, 0, 0, 4, 0, 0, 1])
    stack(src / "long.tif", [0] * 11)
    bad = src / "bad.tif"  # page 3 of 5 declares zero rows: no reader decodes it
    stack(bad, [0] * 5)
    data = bytearray(bad.read_bytes())
    with tifffile.TiffFile(bad) as t:
        tag = t.pages[3].tags["ImageLength"]  # type: ignore[union-attr]
        off, dtype = tag.valueoffset, tag.dtype
    struct.pack_into("<H" if dtype == 3 else "<I", data, off, 0)
    bad.write_bytes(bytes(data))


def content(d: Path) -> tuple[dict[tuple[str, int], tuple[str, bytes]], list[tuple[str, ...]]]:
    con = sqlite3.connect(d / "index.sqlite")
    try:
        recs = con.execute("SELECT row, source, page, meta FROM images").fetchall()
        fails = con.execute("SELECT source, reason, detail FROM failures ORDER BY source")
        failures = [tuple(os.path.basename(s) if i == 0 else s for i, s in enumerate(f))
                    for f in fails]  # fmt: skip
    finally:
        con.close()
    with open_dataset(d) as ds:
        images = np.asarray(ds.images)
        rows = {(os.path.basename(s), p): (m, images[r].tobytes()) for r, s, p, m in recs}
    return rows, failures


def test_the_outcome_is_the_same_for_every_tuning(tmp_path: Path) -> None:
    """workers.count x slots_per_worker: the same rows, pages, metadata, pixels, failures."""
    src = tmp_path / "src"
    corpus(src)
    seen = []
    for workers, slots in ((1, 1), (2, 2), (2, 4), (1, 8), (2, 16)):
        t = tmp_path / f"w{workers}s{slots}"
        t.mkdir()
        over: dict[str, Any] = {
            "image": {"pages": "all"},
            "workers": {"count": workers, "slots_per_worker": slots},
        }
        conf = write_config(t / "cfg.toml", small_sections(t, **over))
        r = run_cli("ingest", str(src), "--config", str(conf))
        assert r.returncode == 0, r.stderr
        seen.append(content(t / "dataset"))
    rows, failures = seen[0]
    assert sorted(k for k in rows if k[0] != "long.tif") == [
        ("geo.tif", 0), ("thumb_first.tif", 1), ("thumb_first.tif", 2),
        ("thumb_first.tif", 4), ("thumb_first.tif", 5),
    ]  # fmt: skip
    assert len([k for k in rows if k[0] == "long.tif"]) == 11
    assert [(f[0], f[1]) for f in failures] == [("bad.tif", "corrupt")]
    assert "page 3" in failures[0][2]
    assert all(s == seen[0] for s in seen[1:])
