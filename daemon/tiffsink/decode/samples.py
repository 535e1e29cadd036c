"""Samples of a decoded page as a viewer shows them: gray (H, W) or RGB (H, W, 3).

The rule is the mainstream readers' (libtiff, tifffile, Pillow): palette indices go
through the colour map, CMYK becomes RGB, MinIsWhite is inverted, and alpha or other
extra samples are dropped. Only then does the converter apply the configured channels,
intensity, fit and dtype. A layout no reader maps is `unsupported_layout`, and the detail
names it (samples, photometric, compression, strips or tiles).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DecodeError
from .scratch import Array

MINISWHITE, MINISBLACK, RGB, PALETTE, MASK, SEPARATED, YCBCR = 0, 1, 2, 3, 4, 5, 6
INKSET_CMYK = 1
_NAMES = {0: "miniswhite", 1: "minisblack", 2: "rgb", 3: "palette", 4: "mask",
          5: "separated", 6: "ycbcr", 8: "cielab", 9: "icclab", 10: "itulab",
          32803: "cfa", 32844: "logl", 32845: "logluv", 34892: "linear_raw"}  # fmt: skip


def describe(samples: int, photometric: int | None, compression: str, tiled: bool) -> str:
    """ "4 samples, photometric separated, JPEG in tiles": what a failure detail names."""
    ph = "none" if photometric is None else _NAMES.get(photometric, str(photometric))
    return f"{samples} samples, photometric {ph}, {compression} in {'tiles' if tiled else 'strips'}"


def _full_scale(dtype: np.dtype[Any]) -> float:
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0


def invert(a: Array) -> Array:
    """MinIsWhite: 0 is white. Viewers show it inverted, so the row is too."""
    if a.dtype == np.bool_:
        return ~a
    if a.dtype.kind == "u":
        return np.iinfo(a.dtype).max - a
    if a.dtype.kind == "i":
        return (np.iinfo(a.dtype).max - a.astype(np.int64)).astype(a.dtype)
    return (1.0 - a).astype(a.dtype)


def cmyk_to_rgb(a: Array) -> Array:
    """Uncalibrated CMYK to RGB, as Pillow does: R = (1 - C)(1 - K), on the dtype's scale."""
    top = _full_scale(a.dtype)
    f = a[..., :4].astype(np.float32)
    rgb = (top - f[..., :3]) * (top - f[..., 3:4]) / top
    if a.dtype.kind in "ui":
        return np.rint(rgb).astype(a.dtype)
    return rgb.astype(a.dtype)


def ycbcr_to_rgb(a: Array) -> Array:
    """Full-range BT.601 YCbCr (TIFF's default ReferenceBlackWhite) to RGB, 8-bit."""
    f = a[..., :3].astype(np.float32)
    y, cb, cr = f[..., 0], f[..., 1] - 128.0, f[..., 2] - 128.0
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    out: Array = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return out


def normalize(
    path: str,
    a: Array,
    photometric: int | None,
    colormap: Array | None,
    inkset: int,
    layout: str,
    jpeg: bool = False,
) -> Array:
    """(H, W, S) samples -> (H, W) gray or (H, W, 3) RGB, contiguous."""
    s = a.shape[2]
    if photometric == PALETTE:
        if colormap is None:
            raise DecodeError(path, "unsupported_layout", f"{layout}: no colour map")
        cmap = np.asarray(colormap).T  # (colours, 3)
        idx = np.minimum(a[..., 0].astype(np.intp), len(cmap) - 1)  # 1-bit pages are bool
        return np.ascontiguousarray(cmap[idx])
    if photometric == SEPARATED:
        if inkset != INKSET_CMYK or s < 4:
            raise DecodeError(path, "unsupported_layout", f"{layout}, inkset {inkset}")
        return cmyk_to_rgb(a)
    # A transparency mask is a row only where a file has no other page: shown as gray.
    if photometric in (MINISWHITE, MINISBLACK, MASK) or (photometric is None and s < 3):
        gray = np.ascontiguousarray(a[..., 0])
        return invert(gray) if photometric == MINISWHITE else gray
    if photometric == YCBCR and s >= 3 and not jpeg and a.dtype == np.uint8:
        return ycbcr_to_rgb(a)  # tifffile leaves uncompressed YCbCr as stored
    if photometric in (RGB, YCBCR, None) and s >= 3:  # libjpeg already gave RGB for JPEG
        return np.ascontiguousarray(a[..., :3])
    raise DecodeError(path, "unsupported_layout", layout)
