"""Map one decoded source image onto a row of the image spec: channels, fit, intensity.

`Converter` is the only place that knows the spec's `fit`, `intensity`, `channels` and
`interpolation`; the decoder hands it a source array and the output row (a view into
shared memory), and it writes the row in place with OpenCV, using scratch buffers.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..config import ImageSpec
from .scratch import Array, Scratch

_INTERP = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
    "lanczos": cv2.INTER_LANCZOS4,
}
_TARGET = {"uint8": (0.0, 255.0, cv2.CV_8U), "uint16": (0.0, 65535.0, cv2.CV_16U),
           "float32": (0.0, 1.0, cv2.CV_32F)}  # fmt: skip
_CV_NATIVE = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


class Converter:
    """Writes source images into rows of one spec; one per process (it owns scratch)."""

    def __init__(self, spec: ImageSpec, scratch: Scratch) -> None:
        self.spec = spec
        self.scratch = scratch
        self.interp = _INTERP[spec.interpolation]
        self.t_lo, self.t_hi, self.t_cv = _TARGET[spec.dtype]
        self.t_dtype = np.dtype(spec.dtype)

    def convert(self, src: Array, bgr: bool, out: Array) -> None:
        """Channels, geometry and intensity of one source image into the row `out`.

        RGB->gray happens at source size (luma first is ~1.7x cheaper than resizing three
        channels); gray->RGB, BGR->RGB and the intensity map happen at target size.
        """
        spec, sc, orig = self.spec, self.scratch, src.dtype
        if src.dtype not in _CV_NATIVE:  # bool, int8/16/32, float16/64...: compute in float32
            f = sc.get("wide", src.shape, np.dtype(np.float32))
            np.copyto(f, src, casting="unsafe")
            src = f
        if src.ndim == 3 and src.shape[2] == 4:
            src = cv2.cvtColor(
                src, cv2.COLOR_RGBA2RGB, dst=sc.get("rgb", (*src.shape[:2], 3), src.dtype)
            )
        if src.ndim == 3 and spec.channels == 1:
            gray = sc.get("gray", src.shape[:2], src.dtype)
            src = cv2.cvtColor(src, cv2.COLOR_BGR2GRAY if bgr else cv2.COLOR_RGB2GRAY, dst=gray)
            bgr = False
        src, region = self._geometry(src, out)
        ch = 1 if src.ndim == 2 else 3
        lo, hi, exact = self._window(orig)
        if exact and ch == spec.channels and not bgr and src.dtype == self.t_dtype:
            _resize(src, region, self.interp)  # the fast path: nothing but the resize
            return
        small = sc.get("small", (*region.shape[:2], ch)[: 2 if ch == 1 else 3], src.dtype)
        _resize(src, small, self.interp)
        if bgr:
            small = cv2.cvtColor(
                small, cv2.COLOR_BGR2RGB, dst=sc.get("rgb2", small.shape, small.dtype)
            )
        dst = region if ch == spec.channels else sc.get("small_t", small.shape, self.t_dtype)
        if spec.intensity == "minmax":
            lo, hi = cv2.minMaxLoc(small.reshape(small.shape[0], -1))[:2]
        if hi <= lo:
            dst[...] = 0
        elif exact:
            np.copyto(dst, small, casting="unsafe")
        else:
            scale = (self.t_hi - self.t_lo) / (hi - lo)
            r = cv2.addWeighted(small, scale, small, 0.0, self.t_lo - lo * scale, dst, self.t_cv)
            if r is not dst:  # OpenCV writes views in place; copy should it ever reallocate
                np.copyto(dst, r.reshape(dst.shape))
            if self.t_dtype.kind == "f":
                np.clip(dst, self.t_lo, self.t_hi, out=dst)
        if dst is not region:
            region[...] = dst[..., None]

    def _window(self, orig: np.dtype[Any]) -> tuple[float, float, bool]:
        """Source values lo..hi that map onto the target range; exact: copy values as is."""
        it = self.spec.intensity
        if isinstance(it, tuple):
            return it[0], it[1], False
        if it == "minmax":  # the window comes from the resized image itself
            return 0.0, 0.0, False
        if orig.kind == "f" or orig.kind == "b":  # float is taken as 0..1; float->float kept
            return 0.0, 1.0, self.t_dtype.kind == "f"
        info = np.iinfo(orig)
        return float(info.min), float(info.max), orig == self.t_dtype

    def _geometry(self, src: Array, out: Array) -> tuple[Array, Array]:
        """(source ROI, output region) for the fit mode; pad zeroes what it leaves out."""
        h, w = src.shape[:2]
        oh, ow = self.spec.height, self.spec.width
        if self.spec.fit == "pad":
            s = min(ow / w, oh / h)
            nh, nw = min(oh, max(1, round(h * s))), min(ow, max(1, round(w * s)))
            y, x = (oh - nh) // 2, (ow - nw) // 2
            if (nh, nw) != (oh, ow):
                out[...] = 0
            return src, out[y : y + nh, x : x + nw]
        if self.spec.fit == "crop":
            s = max(ow / w, oh / h)
            ch, cw = min(h, max(1, round(oh / s))), min(w, max(1, round(ow / s)))
            y, x = (h - ch) // 2, (w - cw) // 2
            return src[y : y + ch, x : x + cw], out
        return src, out


def _resize(src: Array, dst: Array, interp: int) -> None:
    """cv2.resize into dst; OpenCV writes views in place, but copy if it ever reallocates."""
    r = cv2.resize(src, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=interp)
    if r is not dst:
        np.copyto(dst, r.reshape(dst.shape))
