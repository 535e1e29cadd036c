"""Last-resort decoders for pages tifffile cannot read: Pillow, then libtiff via OpenCV.

They only run after tifffile failed on a page (`corrupt` or `unsupported_layout`), so
they cost nothing on the usual files, and they decode that one page: how many pages the
file has, and which are rows, is never theirs to say (decode/planes.py). Pillow opens
lazily: its header facts are checked against the size limits before `load` allocates
anything. OpenCV is tried for page 0 only, and only when tiffsink's own header parse
(which the limits were checked on) succeeded.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import cv2
import numpy as np

from ..errors import DecodeError
from .convert import Converter
from .limits import Limits
from .samples import MINISWHITE, cmyk_to_rgb, invert
from .scratch import Array
from .tiffheader import Ifd

WHOLE_MAX = 256 << 20  # the fallbacks read the file whole; larger files have none


class Fallbacks:
    """The fallback readers for the pages of one decode call; the file is read once."""

    def __init__(
        self,
        converter: Converter,
        limits: Limits,
        read_all: Callable[[int, str, int, int], Array],
        fd: int,
        path: str,
        size: int,
        ifd: Ifd | None,
    ) -> None:
        self.converter, self.limits, self.read_all = converter, limits, read_all
        self.fd, self.path, self.size, self.ifd = fd, path, size, ifd
        self.data: Array | None = None

    def page(self, page: int, out: Array) -> Array | None:
        """Page `page` converted into `out`; its samples, or None if neither reader can."""
        if self.size > WHOLE_MAX:
            return None
        if self.data is None:
            self.data = self.read_all(self.fd, self.path, self.size, 0)
        src = pillow_page(self.data.tobytes(), self.path, page, self.limits)
        if src is not None:
            self.converter.convert(src, False, out)
            return src
        if page == 0 and self.ifd is not None:
            got = opencv_page(self.data, self.ifd.photometric)
            if got is not None:
                self.converter.convert(got[0], got[1], out)
                return got[0]
        return None


_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 1, "PA": 1, "RGB": 1, "RGBA": 1, "RGBX": 1,
          "CMYK": 1, "YCbCr": 1, "LAB": 1, "HSV": 1, "I;16": 2, "I;16B": 2, "I;16L": 2,
          "I;16N": 2, "I": 4, "F": 4}  # fmt: skip


def pillow_page(data: bytes, path: str, page: int, limits: Limits) -> Array | None:
    """Page `page`'s samples as a viewer shows them, or None if Pillow cannot."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - a dependency, but stay a fallback
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            if page >= int(getattr(im, "n_frames", 1)):
                return None
            im.seek(page)
            w, h = im.size
            limits.check(path, page, w, h, 1, len(im.getbands()), _BYTES.get(im.mode, 4))
            im.load()
            a = _pillow_array(im)
            # Pillow inverts MinIsWhite for 1- and 8-bit modes only; do the rest the same.
            tags = getattr(im, "tag_v2", {})
            if tags.get(262) == MINISWHITE and a.dtype.itemsize > 1:
                a = invert(a)
            return a
    except (MemoryError, DecodeError):
        raise  # out of memory, or the size limits: the file's verdict, not Pillow's
    except Exception:
        return None


def _pillow_array(im: object) -> Array:
    from PIL import Image

    assert isinstance(im, Image.Image)
    mode = im.mode
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
    elif mode in ("YCbCr", "HSV", "LAB", "1"):
        im = im.convert("RGB" if mode != "1" else "L")
    a = cmyk_to_rgb(np.asarray(im)) if im.mode == "CMYK" else np.asarray(im)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("="))
    if a.ndim == 3:
        a = a[..., 0] if a.shape[2] < 3 else a[..., :3]
    return np.ascontiguousarray(a)


def opencv_page(data: Array, photometric: int) -> tuple[Array, bool] | None:
    """(samples, is BGR) of page 0 through libtiff, or None."""
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    if img is None or img.size == 0:
        return None
    if img.ndim == 3:
        if img.shape[2] < 3:
            return np.ascontiguousarray(img[..., 0]), False
        return np.ascontiguousarray(img[..., :3]), True
    # libtiff (through OpenCV) inverts 8-bit and bilevel MinIsWhite itself, not 16-bit.
    if photometric == MINISWHITE and img.dtype.itemsize > 1:
        img = invert(img)
    return img, False
