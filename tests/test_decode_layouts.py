"""Every TIFF a mainstream reader decodes becomes the row that reader shows.

Each case is checked against an independent reference (Pillow's image, or tifffile's
samples put through the TIFF rule by hand), at the source size so no resampling hides a
difference, plus one case resized the same way by cv2.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from tiffsink.config import ImageSpec
from tiffsink.decode import decode_file
from tiffsink.errors import DecodeError
from tiffwriter import write_classic

from corpus import gray

H, W = 48, 64


def spec(**kw: Any) -> ImageSpec:
    base: dict[str, Any] = {"height": H, "width": W, "dtype": "uint8"}
    return ImageSpec(**{**base, **kw})


def row(path: Path, s: ImageSpec, page: int = 0) -> np.ndarray:
    return decode_file(path, s)[page][1]


def pillow_rgb(path: Path, page: int = 0) -> np.ndarray:
    im = Image.open(path)
    im.seek(page)
    return np.asarray(im.convert("RGB"))


def palette_file(path: Path, bits: int) -> tuple[Path, np.ndarray, np.ndarray]:
    """A palette image of `bits` bits per index, packed as a scanner writes it."""
    k = 1 << bits
    idx = (np.arange(H * W).reshape(H, W) * 7 % k).astype(np.uint8)
    cmap = np.stack([np.linspace(0, 65535, k), np.linspace(65535, 0, k), np.full(k, 30000)]).astype(
        np.uint16
    )
    bitplanes = np.unpackbits(idx[..., None], axis=-1)[..., 8 - bits :].reshape(H, -1)
    data = np.packbits(bitplanes, axis=-1).tobytes()
    tags = [(256, 3, [W]), (257, 3, [H]), (258, 3, [bits]), (259, 3, [1]), (262, 3, [3]),
            (277, 3, [1]), (278, 3, [H]), (320, 3, [int(v) for v in cmap.ravel()])]  # fmt: skip
    return write_classic(path, tags, data), idx, cmap


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_palette_maps_through_its_colour_map(tmp_path: Path, bits: int) -> None:
    """Palette pages of 1 to 8 bits become the colour map's RGB, as Pillow shows them."""
    p, idx, cmap = palette_file(tmp_path / f"pal{bits}.tif", bits)
    got = row(p, spec(channels=3, dtype="uint16"))
    np.testing.assert_array_equal(got, cmap.T[idx])
    got8 = row(p, spec(channels=3))
    assert np.abs(got8.astype(int) - pillow_rgb(p)).max() <= 1


def test_multipage_palette_maps_every_page(tmp_path: Path) -> None:
    """Each page of a multi-page palette file is mapped through its own colour map."""
    idx = gray(np.uint8, 3)[:H, :W]
    cmap = np.stack([np.arange(256) * 257, (255 - np.arange(256)) * 257, np.full(256, 999)])
    p = tmp_path / "pals.tif"
    tifffile.imwrite(p, np.stack([idx, idx[::-1]]), photometric="palette", colormap=cmap)
    rows = [r for _, r in decode_file(p, spec(channels=3, dtype="uint16", pages="all"))]
    assert len(rows) == 2
    np.testing.assert_array_equal(rows[1], cmap.T[idx[::-1]])


def cmyk_reference(cmyk: np.ndarray) -> np.ndarray:
    f = cmyk.astype(np.float64)
    return np.rint((255 - f[..., :3]) * (255 - f[..., 3:]) / 255).astype(np.uint8)


def test_cmyk_becomes_rgb(tmp_path: Path) -> None:
    """Uncompressed CMYK (photometric separated) becomes RGB as Pillow converts it."""
    cmyk = np.random.default_rng(1).integers(0, 256, (H, W, 4), dtype=np.uint8)
    p = tmp_path / "cmyk.tif"
    tifffile.imwrite(p, cmyk, photometric="separated")
    got = row(p, spec(channels=3))
    np.testing.assert_array_equal(got, cmyk_reference(cmyk))
    assert np.abs(got.astype(int) - pillow_rgb(p)).max() <= 1


@pytest.mark.parametrize("tile", [None, (16, 16)], ids=["strips", "tiles"])
def test_jpeg_cmyk_becomes_rgb(tmp_path: Path, tile: tuple[int, int] | None) -> None:
    """JPEG-compressed CMYK, in strips or tiles, becomes the RGB tifffile's samples give."""
    cmyk = np.random.default_rng(2).integers(0, 256, (H, W, 4), dtype=np.uint8)
    p = tmp_path / "cmyk_jpeg.tif"
    tifffile.imwrite(p, cmyk, photometric="separated", compression="jpeg", tile=tile)
    got = row(p, spec(channels=3))
    np.testing.assert_array_equal(got, cmyk_reference(tifffile.imread(p)))


@pytest.mark.parametrize("planar", ["contig", "separate"])
def test_gray_with_alpha_drops_the_alpha(tmp_path: Path, planar: str) -> None:
    """Gray plus an extra sample (contiguous or planar) is the gray sample alone."""
    g = gray(np.uint16, 4)[:H, :W]
    a = np.stack([g, np.full_like(g, 7)], axis=-1 if planar == "contig" else 0)
    p = tmp_path / "ga.tif"
    tifffile.imwrite(p, a, photometric="minisblack", planarconfig=planar, extrasamples=[2])
    np.testing.assert_array_equal(row(p, spec(dtype="uint16")), g)


def test_rgb_with_extra_samples_keeps_rgb(tmp_path: Path) -> None:
    """RGB plus alpha and another extra sample is the RGB, as Pillow shows it."""
    a = np.random.default_rng(5).integers(0, 256, (H, W, 5), dtype=np.uint8)
    p = tmp_path / "rgbx.tif"
    tifffile.imwrite(p, a, photometric="rgb", extrasamples=[2, 0])
    got = row(p, spec(channels=3))
    np.testing.assert_array_equal(got, a[..., :3])
    np.testing.assert_array_equal(got, pillow_rgb(p))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_miniswhite_is_inverted(tmp_path: Path, dtype: type) -> None:
    """MinIsWhite pages are the negative of their stored values, as viewers show them."""
    g = gray(dtype, 6)[:H, :W]
    p = tmp_path / "white.tif"
    tifffile.imwrite(p, g, photometric="miniswhite")
    got = row(p, spec(dtype=np.dtype(dtype).name))
    np.testing.assert_array_equal(got, np.iinfo(dtype).max - g)
    if dtype == np.uint8:
        np.testing.assert_array_equal(got, np.asarray(Image.open(p)))


def test_bilevel_miniswhite_is_inverted(tmp_path: Path) -> None:
    """A fax-style 1-bit MinIsWhite page: set bits are black."""
    b = np.random.default_rng(7).random((H, W)) > 0.5
    p = tmp_path / "fax.tif"
    tifffile.imwrite(p, b, photometric="miniswhite")
    got = row(p, spec())
    np.testing.assert_array_equal(got, np.where(b, 0, 255))
    np.testing.assert_array_equal(got, np.asarray(Image.open(p).convert("L")))


def test_short_bits_per_sample_applies_the_first_value_to_every_sample(tmp_path: Path) -> None:
    """RGBA whose BitsPerSample lists 3 values for 4 samples becomes the RGB row: the
    first value applies to every sample (libtiff's documented rule)."""
    rgba = np.random.default_rng(8).integers(0, 256, (H, W, 4), dtype=np.uint8)
    tags = [(256, 3, [W]), (257, 3, [H]), (258, 3, [8, 8, 8]), (259, 3, [1]), (262, 3, [2]),
            (277, 3, [4]), (278, 3, [H]), (338, 3, [2])]  # fmt: skip
    p = write_classic(tmp_path / "bits.tif", tags, rgba.tobytes())
    np.testing.assert_array_equal(row(p, spec(channels=3)), rgba[..., :3])


def test_uncompressed_ycbcr_is_converted(tmp_path: Path) -> None:
    """Uncompressed YCbCr (which tifffile returns as stored) becomes RGB like Pillow's."""
    rgb = np.random.default_rng(9).integers(0, 256, (H, W, 3), dtype=np.uint8)
    p = tmp_path / "ycc.tif"
    Image.fromarray(rgb).convert("YCbCr").save(p)
    got = row(p, spec(channels=3))
    assert np.abs(got.astype(int) - pillow_rgb(p)).max() <= 2


def test_subsampled_ycbcr_falls_back_to_libtiff(tmp_path: Path) -> None:
    """tifffile refuses 2x2-subsampled YCbCr; libtiff decodes it, so it becomes a row."""
    rng = np.random.default_rng(10)
    y = rng.integers(16, 235, (H, W), dtype=np.uint8)
    cb = rng.integers(16, 240, (H // 2, W // 2), dtype=np.uint8)
    cr = rng.integers(16, 240, (H // 2, W // 2), dtype=np.uint8)
    blocks = np.stack([y[0::2, 0::2], y[0::2, 1::2], y[1::2, 0::2], y[1::2, 1::2], cb, cr], axis=-1)
    tags = [(256, 3, [W]), (257, 3, [H]), (258, 3, [8, 8, 8]), (259, 3, [1]), (262, 3, [6]),
            (277, 3, [3]), (278, 3, [H]), (530, 3, [2, 2])]  # fmt: skip
    p = write_classic(tmp_path / "ycc22.tif", tags, blocks.tobytes())
    with pytest.raises(NotImplementedError):
        tifffile.imread(p)
    up = lambda c: np.repeat(np.repeat(c, 2, 0), 2, 1).astype(float) - 128  # noqa: E731
    f = y.astype(float)
    want = np.stack([f + 1.402 * up(cr), f - 0.344136 * up(cb) - 0.714136 * up(cr),
                     f + 1.772 * up(cb)], axis=-1)  # fmt: skip
    got = row(p, spec(channels=3))
    assert np.abs(got.astype(int) - np.clip(np.rint(want), 0, 255)).max() <= 2


def test_resized_palette_matches_a_resized_reference(tmp_path: Path) -> None:
    """Resized to half size, a palette row equals the colour-mapped image resized by cv2."""
    p, idx, cmap = palette_file(tmp_path / "pal.tif", 8)
    got = row(p, spec(height=H // 2, width=W // 2, channels=3, dtype="uint16"))
    ref = cv2.resize(
        np.ascontiguousarray(cmap.T[idx]), (W // 2, H // 2), interpolation=cv2.INTER_AREA
    )
    np.testing.assert_array_equal(got, ref)


def test_unmappable_layout_names_it(tmp_path: Path) -> None:
    """A layout no reader maps (RGB with 2 samples) fails naming samples, photometric, codec."""
    tags = [(256, 3, [W]), (257, 3, [H]), (258, 3, [8, 8]), (259, 3, [1]), (262, 3, [2]),
            (277, 3, [2]), (278, 3, [H])]  # fmt: skip
    p = write_classic(tmp_path / "rg.tif", tags, bytes(H * W * 2))
    with pytest.raises(DecodeError) as e:
        decode_file(p, spec(channels=3))
    assert e.value.reason == "unsupported_layout"
    assert e.value.detail == "2 samples, photometric rgb, NONE in strips"


def test_cielab_becomes_rgb_through_a_fallback(tmp_path: Path) -> None:
    """CIELab, which tiffsink does not map itself, still becomes the RGB a reader shows."""
    lab = np.zeros((H, W, 3), np.uint8)
    lab[:, W // 2 :, 0] = 255  # L* = 100 on the right half: white
    p = tmp_path / "lab.tif"
    tifffile.imwrite(p, lab, photometric="cielab")
    got = row(p, spec(channels=3))
    assert got[:, : W // 2].max() <= 2 and got[:, W // 2 + 1 :].min() >= 250


def many_samples(path: Path, samples: int, side: int) -> Path:
    """A header declaring `samples` 8-bit samples per pixel of a side x side image."""
    tags = [(256, 4, [side]), (257, 4, [side]), (258, 3, [8]), (259, 3, [1]), (262, 3, [1]),
            (277, 3, [samples]), (278, 4, [side])]  # fmt: skip
    return write_classic(path, tags, b"\0" * 64)


@pytest.mark.parametrize("samples", [200, 65535])
def test_size_limit_counts_every_sample(tmp_path: Path, samples: int) -> None:
    """Few pixels but many samples per pixel: refused as too_large before any allocation."""
    p = many_samples(tmp_path / "s.tif", samples, 4096)
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError) as e:
            decode_file(p, spec())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert e.value.reason == "too_large" and "max_page_bytes" in e.value.detail
    assert f"{samples} samples of 1 bytes" in e.value.detail
    assert peak < 16 << 20


def test_size_limit_counts_bytes_per_sample(tmp_path: Path) -> None:
    """The same pixels are refused at 16 bits and accepted at 8 under one byte limit."""
    g16 = gray(np.uint16, 1)
    tifffile.imwrite(tmp_path / "a.tif", g16)
    tifffile.imwrite(tmp_path / "b.tif", (g16 >> 8).astype(np.uint8))
    s = spec(max_page_bytes=g16.size)  # room for one byte per pixel
    with pytest.raises(DecodeError, match="too_large"):
        decode_file(tmp_path / "a.tif", s)
    assert len(decode_file(tmp_path / "b.tif", s)) == 1


def test_size_limit_applies_to_later_pages(tmp_path: Path) -> None:
    """Page 1 of a multi-page file (the tifffile route) is checked before it is decoded."""
    p = tmp_path / "two.tif"
    with tifffile.TiffWriter(p) as t:
        t.write(np.zeros((8, 8), np.uint8))
        t.write(np.zeros((64, 64), np.uint8))
    with pytest.raises(DecodeError) as e:
        decode_file(p, spec(pages="all", max_page_bytes=1000))
    assert e.value.reason == "too_large" and "page 1" in str(e.value)


def test_size_limit_applies_in_the_pillow_fallback(tmp_path: Path) -> None:
    """Pillow opens lazily: its header facts are checked before it decodes anything."""
    from tiffsink.decode.fallback import pillow_page
    from tiffsink.decode.limits import Limits

    buf = io.BytesIO()
    Image.fromarray(np.zeros((H, W), np.uint8)).save(buf, format="TIFF")
    with pytest.raises(DecodeError, match="max_page_bytes"):
        pillow_page(buf.getvalue(), "x.tif", 0, Limits(spec(max_page_bytes=H * W - 1)))
    got = pillow_page(buf.getvalue(), "x.tif", 0, Limits(spec()))
    assert got is not None and got.shape == (H, W)


def test_libtiff_warnings_do_not_reach_stderr(tmp_path: Path) -> None:
    """Once a Decoder exists, libtiff's warnings about an odd file do not reach stderr
    (OpenCV 5 prints them there; the daemon's journal would get a line per file)."""
    rgba = np.random.default_rng(8).integers(0, 256, (H, W, 4), dtype=np.uint8)
    tags = [(256, 3, [W]), (257, 3, [H]), (258, 3, [8, 8, 8]), (259, 3, [1]), (262, 3, [2]),
            (277, 3, [4]), (278, 3, [H]), (338, 3, [2])]  # fmt: skip
    p = write_classic(tmp_path / "bits.tif", tags, rgba.tobytes())
    code = (
        "import sys, cv2, numpy as np; from tiffsink.config import ImageSpec; "
        "from tiffsink.decode import Decoder; Decoder(ImageSpec()); "
        "cv2.imdecode(np.fromfile(sys.argv[1], np.uint8), cv2.IMREAD_UNCHANGED)"
    )
    r = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
