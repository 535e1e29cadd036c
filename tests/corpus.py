"""Test TIFFs, written with tifffile, with deterministic content: valid kinds and hostile bytes.

Every valid kind is a function `kind(path) -> source array`: it writes the file and returns
the pixels a correct decoder must see, as (H, W) or (H, W, C) in RGB order, or (N, H, W)
for the kinds in MULTIPAGE. Images are small and non-square (48x64) so tests stay fast and
a transposed row shows up.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tifffile

H, W = 48, 64
MULTIPAGE = frozenset({"stack", "ome", "imagej"})
LOSSY = frozenset({"jpeg"})


def write_tiff(path: Path, array: np.ndarray, **kwargs: Any) -> Path:
    """tifffile.imwrite with the path returned, so helpers read as one line."""
    tifffile.imwrite(path, array, **kwargs)
    return path


def gray(dtype: Any = np.uint16, seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    """A smooth ramp plus noise over most of the dtype's range (floats: 0..1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    v: np.ndarray = (yy / max(h - 1, 1) * 0.6 + xx / max(w - 1, 1) * 0.3) + rng.random((h, w)) * 0.1
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return v.astype(dt)
    top = np.iinfo(dt).max
    out: np.ndarray = np.clip(np.rint(v * top), 0, top).astype(dt)
    return out


def rgb(dtype: Any = np.uint8, seed: int = 0, channels: int = 3) -> np.ndarray:
    return np.stack([gray(dtype, seed + k) for k in range(channels)], axis=-1)


def _w(path: Path, a: np.ndarray, **kw: Any) -> np.ndarray:
    write_tiff(path, a, **kw)
    return a


def uint16_gray(p: Path) -> np.ndarray:
    return _w(p, gray(np.uint16, 1))


def uint8_gray(p: Path) -> np.ndarray:
    return _w(p, gray(np.uint8, 2))


def uint8_rgb(p: Path) -> np.ndarray:
    return _w(p, rgb(np.uint8, 3), photometric="rgb")


def uint16_rgb(p: Path) -> np.ndarray:
    return _w(p, rgb(np.uint16, 4), photometric="rgb")


def rgba(p: Path) -> np.ndarray:
    return _w(p, rgb(np.uint8, 5, channels=4), photometric="rgb", extrasamples=["unassalpha"])


def lzw(p: Path) -> np.ndarray:
    return _w(p, gray(np.uint16, 6), compression="lzw", predictor=True)


def lzw_rgb(p: Path) -> np.ndarray:
    return _w(p, rgb(np.uint8, 7), photometric="rgb", compression="lzw")


def deflate(p: Path) -> np.ndarray:
    return _w(p, gray(np.uint16, 8), compression="zlib")


def zstd(p: Path) -> np.ndarray:
    return _w(p, rgb(np.uint8, 9), photometric="rgb", compression="zstd")


def jpeg(p: Path) -> np.ndarray:
    return _w(p, rgb(np.uint8, 10), photometric="rgb", compression="jpeg")


def packbits(p: Path) -> np.ndarray:
    return _w(p, gray(np.uint8, 11), compression="packbits")


def tiled(p: Path) -> np.ndarray:
    return _w(p, gray(np.uint16, 12), tile=(16, 16))


def bigtiff(p: Path) -> np.ndarray:
    return _w(p, gray(np.uint16, 13), bigtiff=True)


def big_endian(p: Path) -> np.ndarray:
    return _w(p, gray(np.uint16, 14), byteorder=">")


def planar_rgb(p: Path) -> np.ndarray:
    a = rgb(np.uint8, 15)
    write_tiff(p, np.moveaxis(a, -1, 0), photometric="rgb", planarconfig="separate")
    return a


def twelve_bit(p: Path) -> np.ndarray:
    """12-bit camera data in 16-bit containers, the common case (values 0..4095)."""
    return _w(p, gray(np.uint16, 16) >> 4)


def packed12(p: Path) -> np.ndarray:
    """12-bit samples bit-packed in the file (BitsPerSample=12)."""
    return _w(p, gray(np.uint16, 17) >> 4, bitspersample=12)


def float32(p: Path) -> np.ndarray:
    return _w(p, gray(np.float32, 18))


def stack(p: Path) -> np.ndarray:
    return _w(p, np.stack([gray(np.uint16, 20 + k) for k in range(5)]))


def ome(p: Path) -> np.ndarray:
    a = np.stack([gray(np.uint16, 30 + k) for k in range(3)])
    return _w(p, a, ome=True, metadata={"axes": "ZYX"})


def imagej(p: Path) -> np.ndarray:
    """A TCYX hyperstack: 2 timepoints x 3 channels = 6 pages, T-major like ImageJ."""
    a = np.stack([gray(np.uint16, 40 + k) for k in range(6)])
    write_tiff(p, a.reshape(2, 3, H, W), imagej=True, metadata={"axes": "TCYX"})
    return a


KINDS: dict[str, Callable[[Path], np.ndarray]] = {
    f.__name__: f
    for f in (uint16_gray, uint8_gray, uint8_rgb, uint16_rgb, rgba, lzw, lzw_rgb, deflate,
              zstd, jpeg, packbits, tiled, bigtiff, big_endian, planar_rgb, twelve_bit,
              packed12, float32, stack, ome, imagej)
}  # fmt: skip


# -- hostile bytes ---------------------------------------------------------------------
def empty(p: Path) -> Path:
    p.write_bytes(b"")
    return p


def truncated(p: Path, at: int | None = None) -> Path:
    """A valid uncompressed file cut at `at` bytes (default: halfway through the pixels)."""
    full = p.with_name(p.name + ".full")
    uint16_gray(full)
    data = full.read_bytes()
    full.unlink()
    p.write_bytes(data[: len(data) // 2 if at is None else at])
    return p


def random_bytes(p: Path, n: int = 4096) -> Path:
    p.write_bytes(np.random.default_rng(99).integers(0, 256, n, dtype=np.uint8).tobytes())
    return p


def png_renamed(p: Path) -> Path:
    ok, png = cv2.imencode(".png", gray(np.uint8, 50))
    assert ok
    p.write_bytes(png.tobytes())
    return p


def huge_header(p: Path, side: int = 100_000) -> Path:
    """A tiny classic TIFF whose tags declare a side x side uint16 image (a decompression bomb)."""
    tags = [  # (tag, type, value); type 3 SHORT, 4 LONG
        (256, 4, side), (257, 4, side), (258, 3, 16), (259, 3, 1), (262, 3, 1),
        (273, 4, 8 + 2 + 12 * 9 + 4), (277, 3, 1), (278, 4, side), (279, 4, 0xFFFFFFFF),
    ]  # fmt: skip
    body = struct.pack("<2sHI", b"II", 42, 8) + struct.pack("<H", len(tags))
    for tag, typ, val in tags:
        value = struct.pack("<I", val) if typ == 4 else struct.pack("<HH", val, 0)
        body += struct.pack("<HHI", tag, typ, 1) + value
    p.write_bytes(body + struct.pack("<I", 0) + b"\0" * 64)
    return p


def self_loop(p: Path) -> Path:
    """A valid uint8 image whose IFD's next-IFD offset points back at itself."""
    write_tiff(p, gray(np.uint8, 60))
    data = bytearray(p.read_bytes())
    (ifd,) = struct.unpack_from("<I", data, 4)
    (n,) = struct.unpack_from("<H", data, ifd)
    struct.pack_into("<I", data, ifd + 2 + 12 * n, ifd)
    p.write_bytes(bytes(data))
    return p


HOSTILE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "empty": (empty, "empty"),
    "truncated": (truncated, "truncated"),
    "truncated_header": (lambda p: truncated(p, 5), "truncated"),
    "random_bytes": (random_bytes, "not_tiff"),
    "png_renamed": (png_renamed, "not_tiff"),
    "huge_header": (huge_header, "too_large"),
}
