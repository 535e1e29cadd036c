"""Decoding one TIFF into rows: every kind, geometry, channels, intensity, pages, hostile input.

Expected rows are computed independently from the known source array with cv2.resize, so
a test failing says which behaviour of decode broke.
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import tifffile
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tiffsink.config import ImageSpec
from tiffsink.decode import Decoder, PageInfo, decode_file
from tiffsink.decode.safeopen import open_source
from tiffsink.errors import DecodeError

import corpus

OH, OW = 24, 40  # target rows: small, non-square, neither a divisor nor a multiple of 48x64


def spec(**kw: Any) -> ImageSpec:
    base: dict[str, Any] = {"height": OH, "width": OW, "dtype": "uint16", "pages": "all"}
    return ImageSpec(**{**base, **kw})


def resized(a: np.ndarray, w: int = OW, h: int = OH, interp: int = cv2.INTER_AREA) -> np.ndarray:
    return cv2.resize(np.ascontiguousarray(a), (w, h), interpolation=interp)


def rows(path: Path, sp: ImageSpec, root: Path | None = None) -> list[np.ndarray]:
    return [a for _, a in decode_file(path, sp, None if root is None else str(root))]


def reason(path: Path, sp: ImageSpec | None = None, root: Path | None = None) -> str:
    with pytest.raises(DecodeError) as ei:
        decode_file(path, sp or spec(), None if root is None else str(root))
    return ei.value.reason


# -- every kind ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(corpus.KINDS))
def test_kind_decodes_to_resized_source(tmp_path: Path, kind: str) -> None:
    """Each corpus kind decodes, page by page, to cv2.resize of the array it was written from."""
    src = corpus.KINDS[kind](tmp_path / f"{kind}.tif")
    pages = list(src) if kind in corpus.MULTIPAGE else [src]
    first = pages[0]
    sp = spec(channels=1 if first.ndim == 2 else 3, dtype=first.dtype.name)
    got = decode_file(tmp_path / f"{kind}.tif", sp)
    assert [info.page for info, _ in got] == list(range(len(pages)))
    for (info, row), page in zip(got, pages, strict=True):
        assert (info.height, info.width) == page.shape[:2]
        want = resized(page[..., :3] if page.ndim == 3 else page)
        assert row.shape == sp.row_shape and row.dtype == want.dtype
        tol = 16 if kind in corpus.LOSSY else 0
        np.testing.assert_allclose(row.astype(np.float64), want, atol=tol, rtol=0)


# -- geometry ----------------------------------------------------------------------------
def wide_source(tmp_path: Path) -> tuple[Path, np.ndarray]:
    src = corpus.gray(np.uint16, 70, h=100, w=200)
    return corpus.write_tiff(tmp_path / "wide.tif", src), src


def test_stretch_resizes_whole_image_to_target(tmp_path: Path) -> None:
    """fit=stretch ignores the aspect ratio and resizes the whole image."""
    p, src = wide_source(tmp_path)
    np.testing.assert_array_equal(rows(p, spec(height=64, width=64))[0], resized(src, 64, 64))


def test_pad_keeps_aspect_centres_and_zeroes_borders(tmp_path: Path) -> None:
    """fit=pad fits 200x100 into 64x64 as a centred 64x32 band with zero borders above/below."""
    p, src = wide_source(tmp_path)
    row = rows(p, spec(height=64, width=64, fit="pad"))[0]
    assert not row[:16].any() and not row[48:].any()
    np.testing.assert_array_equal(row[16:48], resized(src, 64, 32))


def test_pad_zeroes_borders_even_over_garbage(tmp_path: Path) -> None:
    """fit=pad writes every pixel of the row, so a reused slot keeps no old content."""
    p = corpus.write_tiff(tmp_path / "tall.tif", np.full((90, 30), 200, np.uint8))
    out = np.full((30, 30), 255, np.uint8)
    fd, st_ = open_source(str(p), None)
    try:
        Decoder(spec(height=30, width=30, dtype="uint8", fit="pad")).decode(
            fd, str(p), st_.st_size, 0, [out]
        )
    finally:
        os.close(fd)
    assert not out[:, :10].any() and not out[:, 20:].any() and (out[:, 10:20] == 200).all()


def test_crop_keeps_the_centre(tmp_path: Path) -> None:
    """fit=crop takes the centred 100x100 region of a 200x100 image and fills the target."""
    p, src = wide_source(tmp_path)
    row = rows(p, spec(height=64, width=64, fit="crop"))[0]
    np.testing.assert_array_equal(row, resized(src[:, 50:150], 64, 64))


@pytest.mark.parametrize(
    ("name", "flag"),
    [("area", cv2.INTER_AREA), ("linear", cv2.INTER_LINEAR), ("cubic", cv2.INTER_CUBIC),
     ("nearest", cv2.INTER_NEAREST), ("lanczos", cv2.INTER_LANCZOS4)],
)  # fmt: skip
def test_interpolation_uses_the_named_cv2_flag(tmp_path: Path, name: str, flag: int) -> None:
    """spec.interpolation selects the matching cv2 interpolation."""
    src = corpus.uint16_gray(tmp_path / "a.tif")
    got = rows(tmp_path / "a.tif", spec(height=100, width=30, interpolation=name))[0]
    np.testing.assert_array_equal(got, resized(src, 30, 100, flag))


# -- channels ----------------------------------------------------------------------------
def test_gray_to_three_channels_replicates(tmp_path: Path) -> None:
    """A gray source in a 3-channel spec has three identical channels."""
    src = corpus.uint8_gray(tmp_path / "g.tif")
    row = rows(tmp_path / "g.tif", spec(channels=3, dtype="uint8"))[0]
    for c in range(3):
        np.testing.assert_array_equal(row[..., c], resized(src))


@pytest.mark.parametrize("kind", ["uint8_rgb", "lzw_rgb", "zstd"])
def test_rgb_to_gray_is_601_luma(tmp_path: Path, kind: str) -> None:
    """RGB to 1 channel is ITU-R 601 luma (cvtColor RGB2GRAY) at source size, then resized."""
    src = corpus.KINDS[kind](tmp_path / "c.tif")
    row = rows(tmp_path / "c.tif", spec(channels=1, dtype="uint8"))[0]
    np.testing.assert_array_equal(row, resized(cv2.cvtColor(src, cv2.COLOR_RGB2GRAY)))


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    """An RGBA source keeps R, G and B and ignores alpha."""
    src = corpus.rgba(tmp_path / "a.tif")
    row = rows(tmp_path / "a.tif", spec(channels=3, dtype="uint8"))[0]
    np.testing.assert_array_equal(row, resized(src[..., :3]))


def test_palette_goes_through_its_colormap(tmp_path: Path) -> None:
    """A palette image becomes RGB through its 16-bit colormap."""
    idx = corpus.gray(np.uint8, 5)
    cmap = np.stack([np.arange(256) * 257, (255 - np.arange(256)) * 257, np.full(256, 999)])
    p = corpus.write_tiff(tmp_path / "p.tif", idx, photometric="palette", colormap=cmap)
    row = rows(p, spec(height=48, width=64, channels=3))[0]
    np.testing.assert_array_equal(row, cmap.T[idx])


def test_two_samples_per_pixel_is_the_gray_sample(tmp_path: Path) -> None:
    """Gray+alpha (2 samples) is its gray sample, as viewers show it (was unsupported)."""
    a = np.stack([corpus.gray(np.uint8, 1), corpus.gray(np.uint8, 2)], axis=-1)
    p = corpus.write_tiff(tmp_path / "ga.tif", a, photometric="minisblack", planarconfig="contig")
    np.testing.assert_array_equal(rows(p, spec(height=48, width=64, dtype="uint8"))[0], a[..., 0])


# -- intensity ---------------------------------------------------------------------------
def test_full_maps_uint16_range_onto_uint8(tmp_path: Path) -> None:
    """intensity=full maps 0..65535 onto 0..255 (divide by 257, round)."""
    src = corpus.uint16_gray(tmp_path / "a.tif")
    row = rows(tmp_path / "a.tif", spec(dtype="uint8"))[0]
    np.testing.assert_allclose(row, np.rint(resized(src) / 257.0), atol=1, rtol=0)


def test_full_maps_uint8_onto_float32_unit_range(tmp_path: Path) -> None:
    """intensity=full maps uint8 0..255 onto float32 0..1."""
    src = corpus.uint8_gray(tmp_path / "a.tif")
    row = rows(tmp_path / "a.tif", spec(dtype="float32"))[0]
    np.testing.assert_allclose(row, resized(src) / 255.0, atol=1e-6)


def test_float_source_is_taken_as_unit_range_and_clipped(tmp_path: Path) -> None:
    """A float source maps 0..1 onto uint16 0..65535; values outside are clipped."""
    src = np.linspace(-0.5, 1.5, 48 * 64, dtype=np.float32).reshape(48, 64)
    p = corpus.write_tiff(tmp_path / "f.tif", src)
    row = rows(p, spec(height=48, width=64, interpolation="nearest"))[0]
    np.testing.assert_allclose(row, np.clip(np.rint(src * 65535.0), 0, 65535), atol=1, rtol=0)


def test_signed_source_maps_its_full_range(tmp_path: Path) -> None:
    """int16 -32768..32767 maps onto uint16 0..65535 (an offset of 32768)."""
    src = (corpus.gray(np.uint16, 3).astype(np.int32) - 32768).astype(np.int16)
    p = corpus.write_tiff(tmp_path / "s.tif", src)
    row = rows(p, spec(height=48, width=64))[0]
    np.testing.assert_array_equal(row, src.astype(np.int32) + 32768)


def test_minmax_stretches_the_resized_image(tmp_path: Path) -> None:
    """intensity=minmax maps the resized image's own min..max onto the full target range."""
    src = corpus.twelve_bit(tmp_path / "a.tif")
    row = rows(tmp_path / "a.tif", spec(intensity="minmax"))[0]
    r = resized(src).astype(np.float64)
    want = (r - r.min()) / (r.max() - r.min()) * 65535.0
    np.testing.assert_allclose(row, np.rint(want), atol=1, rtol=0)
    assert row.min() == 0 and row.max() == 65535


def test_minmax_of_constant_image_is_zeros(tmp_path: Path) -> None:
    """A constant image under minmax has no range to stretch and becomes all zeros."""
    p = corpus.write_tiff(tmp_path / "c.tif", np.full((48, 64), 1234, np.uint16))
    assert not rows(p, spec(intensity="minmax"))[0].any()


def test_twelve_bit_window_maps_4095_to_65535(tmp_path: Path) -> None:
    """A fixed window [0, 4095] on 12-bit data maps 0 -> 0 and 4095 -> 65535, clipping above."""
    src = np.tile(np.array([0, 1, 2048, 4095, 5000], np.uint16), (4, 2))
    p = corpus.write_tiff(tmp_path / "w.tif", src)
    row = rows(p, spec(height=4, width=10, intensity=(0.0, 4095.0)))[0]
    assert list(row[0, :5]) == [0, 16, 32776, 65535, 65535]


def test_same_dtype_full_is_an_exact_resize(tmp_path: Path) -> None:
    """Same dtype with intensity=full changes no value: 12-bit data stays 0..4095."""
    src = corpus.twelve_bit(tmp_path / "a.tif")
    row = rows(tmp_path / "a.tif", spec())[0]
    np.testing.assert_array_equal(row, resized(src))
    assert row.max() <= 4095


# -- pages -------------------------------------------------------------------------------
def test_pages_all_gives_one_row_per_page(tmp_path: Path) -> None:
    """pages=all yields every page of a stack in order, with its page number."""
    src = corpus.stack(tmp_path / "s.tif")
    got = decode_file(tmp_path / "s.tif", spec())
    assert [i.page for i, _ in got] == [0, 1, 2, 3, 4]
    for (_, row), page in zip(got, src, strict=True):
        np.testing.assert_array_equal(row, resized(page))


def test_pages_first_gives_only_page_zero(tmp_path: Path) -> None:
    """pages=first decodes page 0 of a stack and reports one page in total."""
    src = corpus.stack(tmp_path / "s.tif")
    got = decode_file(tmp_path / "s.tif", spec(pages="first"))
    assert len(got) == 1 and got[0][0]._replace(digest="") == PageInfo(0, 48, 64, "uint16", 1)
    np.testing.assert_array_equal(got[0][1], resized(src[0]))


def test_decode_from_a_later_page_fills_only_what_is_left(tmp_path: Path) -> None:
    """Decoding from page 3 of 5 into 4 slots fills 2, reports 5 in total and hashes nothing."""
    src = corpus.stack(tmp_path / "s.tif")
    outs = [np.zeros((OH, OW), np.uint16) for _ in range(4)]
    p = str(tmp_path / "s.tif")
    fd, st_ = open_source(p, None)
    try:
        res = Decoder(spec()).decode(fd, p, st_.st_size, 3, outs)
    finally:
        os.close(fd)
    assert res.pages_total == 5 and [i.page for i in res.pages] == [3, 4]
    assert res.content_hash is None
    np.testing.assert_array_equal(outs[1], resized(src[4]))
    assert not outs[2].any()


def test_self_referencing_ifd_does_not_hang(tmp_path: Path) -> None:
    """An IFD whose next-IFD offset points at itself ends quickly with at most its one page."""
    p = corpus.self_loop(tmp_path / "loop.tif")
    t0 = time.monotonic()
    try:
        assert len(decode_file(p, spec(dtype="uint8"))) <= 1
    except DecodeError as e:
        assert e.reason == "corrupt"
    assert time.monotonic() - t0 < 5


# -- hostile files -----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(corpus.HOSTILE))
def test_hostile_file_gives_its_reason(tmp_path: Path, name: str) -> None:
    """Each hostile file fails with its own DecodeError reason."""
    make, want = corpus.HOSTILE[name]
    assert reason(make(tmp_path / f"{name}.tif")) == want


def test_huge_declared_image_fails_fast_without_allocating(tmp_path: Path) -> None:
    """A header declaring 100000x100000 is refused in well under a second with tiny memory."""
    p = corpus.huge_header(tmp_path / "bomb.tif")
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        assert reason(p, spec(max_pixels=2**28)) == "too_large"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - t0 < 0.5 and peak < 4 << 20


def test_truncated_compressed_file_is_truncated(tmp_path: Path) -> None:
    """An LZW file cut short is truncated, not silently zero-filled."""
    corpus.lzw(tmp_path / "full.tif")
    data = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) - 100])
    assert reason(tmp_path / "cut.tif") == "truncated"


def test_garbage_in_the_pixel_stream_is_corrupt(tmp_path: Path) -> None:
    """A deflate file whose compressed bytes are garbage is corrupt, with the decoder's text."""
    corpus.deflate(tmp_path / "d.tif")
    with tifffile.TiffFile(tmp_path / "d.tif") as t:
        off, n = t.pages[0].dataoffsets[0], t.pages[0].databytecounts[0]
    data = bytearray((tmp_path / "d.tif").read_bytes())
    data[off : off + n] = b"\xff" * n
    (tmp_path / "d.tif").write_bytes(bytes(data))
    assert reason(tmp_path / "d.tif") == "corrupt"


# -- opening safely ----------------------------------------------------------------------
def test_fifo_does_not_block_and_is_not_regular(tmp_path: Path) -> None:
    """A FIFO named .tif is refused as not_regular without blocking on open."""
    os.mkfifo(tmp_path / "pipe.tif")
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(reason(tmp_path / "pipe.tif")), daemon=True)
    t.start()
    t.join(5)
    assert got == ["not_regular"]


def test_directory_is_not_regular(tmp_path: Path) -> None:
    """A directory named .tif is refused as not_regular."""
    (tmp_path / "dir.tif").mkdir()
    assert reason(tmp_path / "dir.tif") == "not_regular"


def test_missing_file_is_vanished(tmp_path: Path) -> None:
    """A file that is gone by the time it is opened is vanished."""
    assert reason(tmp_path / "gone.tif") == "vanished"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_unreadable(tmp_path: Path) -> None:
    """A file without read permission is unreadable."""
    p = corpus.write_tiff(tmp_path / "locked.tif", corpus.gray())
    p.chmod(0)
    assert reason(p) == "unreadable"


def test_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    """A symlink in the root pointing at a file outside it is symlink_outside_root."""
    (tmp_path / "root").mkdir()
    corpus.uint16_gray(tmp_path / "outside.tif")
    (tmp_path / "root" / "link.tif").symlink_to(tmp_path / "outside.tif")
    assert reason(tmp_path / "root" / "link.tif", root=tmp_path / "root") == "symlink_outside_root"


def test_symlinked_parent_escaping_root_is_refused(tmp_path: Path) -> None:
    """A file reached through a symlinked directory that leaves the root is refused."""
    (tmp_path / "root").mkdir()
    (tmp_path / "elsewhere").mkdir()
    corpus.uint16_gray(tmp_path / "elsewhere" / "a.tif")
    (tmp_path / "root" / "sub").symlink_to(tmp_path / "elsewhere")
    got = reason(tmp_path / "root" / "sub" / "a.tif", root=tmp_path / "root")
    assert got == "symlink_outside_root"


def test_dangling_symlink_is_reported(tmp_path: Path) -> None:
    """A symlink whose target does not exist is dangling_symlink."""
    (tmp_path / "link.tif").symlink_to(tmp_path / "nothing.tif")
    assert reason(tmp_path / "link.tif", root=tmp_path) == "dangling_symlink"


def test_symlink_inside_root_decodes(tmp_path: Path) -> None:
    """A symlink to a regular file inside the root decodes like the file itself."""
    src = corpus.uint16_gray(tmp_path / "real.tif")
    (tmp_path / "link.tif").symlink_to(tmp_path / "real.tif")
    np.testing.assert_array_equal(
        rows(tmp_path / "link.tif", spec(), root=tmp_path)[0], resized(src)
    )


# -- hashing and in-place output ---------------------------------------------------------
@pytest.mark.parametrize("kind", ["uint16_gray", "lzw", "deflate", "stack"])
def test_content_hash_is_xxh3_128_of_the_file(tmp_path: Path, kind: str) -> None:
    """content_hash is xxh3_128 of the whole file's bytes, whichever decode route ran."""
    p = tmp_path / "a.tif"
    corpus.KINDS[kind](p)
    fd, st_ = open_source(str(p), None)
    try:
        res = Decoder(spec()).decode(fd, str(p), st_.st_size, 0, [np.empty((OH, OW), np.uint16)])
    finally:
        os.close(fd)
    assert res.content_hash == xxhash.xxh3_128(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("fit", ["stretch", "pad", "crop"])
@pytest.mark.parametrize("dtype", ["uint16", "uint8"])
def test_decoder_writes_in_place_into_given_outs(tmp_path: Path, fit: str, dtype: str) -> None:
    """Rows land in the caller's arrays (views of one block, like shared memory), nowhere else."""
    corpus.uint16_gray(tmp_path / "a.tif")
    sp = spec(fit=fit, dtype=dtype, height=30)
    block = np.full((3, *sp.row_shape), 7, sp.dtype)
    p = str(tmp_path / "a.tif")
    dec = Decoder(sp)
    for _ in range(2):  # the second file reuses the Decoder's scratch buffers
        fd, st_ = open_source(p, None)
        try:
            dec.decode(fd, p, st_.st_size, 0, [block[1]])
        finally:
            os.close(fd)
    np.testing.assert_array_equal(block[1], rows(tmp_path / "a.tif", sp)[0])
    assert (block[0] == 7).all() and (block[2] == 7).all()


# -- round trip --------------------------------------------------------------------------
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    arr=hnp.arrays(
        st.sampled_from([np.uint8, np.uint16]),
        st.tuples(st.integers(1, 40), st.integers(1, 40))
        | st.tuples(st.integers(1, 30), st.integers(1, 30), st.just(3)),
    ),
    compression=st.sampled_from([None, "lzw", "packbits", "zlib"]),
    byteorder=st.sampled_from(["<", ">"]),
)  # fmt: skip
def test_round_trip_at_same_size_is_exact(
    tmp_path: Path, arr: np.ndarray, compression: str | None, byteorder: str
) -> None:
    """Any small uint8/uint16 gray or RGB image written by tifffile decodes back unchanged."""
    p = tmp_path / "rt.tif"
    rgb = arr.ndim == 3
    corpus.write_tiff(p, arr, photometric="rgb" if rgb else "minisblack",
                      compression=compression, byteorder=byteorder)  # fmt: skip
    sp = ImageSpec(height=arr.shape[0], width=arr.shape[1], channels=3 if rgb else 1,
                   dtype=arr.dtype.name)  # fmt: skip
    ((info, row),) = decode_file(p, sp)
    want = PageInfo(0, arr.shape[0], arr.shape[1], arr.dtype.name, 3 if rgb else 1)
    assert info._replace(digest="") == want and len(info.digest) == 16
    np.testing.assert_array_equal(row, arr)
