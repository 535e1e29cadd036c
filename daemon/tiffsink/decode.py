"""Decode one TIFF, read through an already-open descriptor, into rows of the image spec.

Three routes, cheapest first, chosen from a minimal parse of IFD 0 (tiffheader):
  raw     uncompressed contiguous page 0: the whole file is read once into a reusable
          buffer, hashed there, and the pixel bytes are resized straight into the output;
  cv2     LZW / PackBits / JPEG, 8/16-bit gray or RGB: cv2.imdecode of those same bytes
          (libtiff's LZW is ~1.7x faster than imagecodecs'); a result that disagrees with
          the header falls through to tifffile;
  tifffile everything else and every page after 0 (tiles, deflate, zstd, planar, float...).
The declared geometry is checked against max_pixels before anything is allocated, and
every decoder failure becomes a DecodeError with a short reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import cv2
import numpy as np
import tifffile
import xxhash

from .config import ImageSpec
from .errors import DecodeError
from .safeopen import open_source
from .tiffheader import HeaderError, Ifd, read_first_ifd

Array = np.ndarray[Any, np.dtype[Any]]
T = TypeVar("T")
P = ParamSpec("P")

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
_CV2_CODECS = frozenset((5, 7, 32773))  # LZW, JPEG, PackBits
_WHOLE_MAX = 256 << 20  # files up to this size are read whole (fast routes); larger stream
_KEEP_BYTES = 64 << 20  # bigger scratch is dropped after a file that did not use it
_HASH_CHUNK = 8 << 20
_CHUNK = 8  # pages per Decoder.decode call in decode_file, like a worker's slots


@dataclass(frozen=True)
class PageInfo:
    """The SOURCE page's geometry (the row's geometry is the spec's)."""

    page: int
    height: int
    width: int
    dtype: str
    channels: int


@dataclass
class DecodeResult:
    pages_total: int  # pages this file contributes (1 when spec.pages == "first")
    pages: list[PageInfo]  # pages decoded by this call; pages[i] went to outs[i]
    content_hash: str | None  # xxh3_128 of the whole file; only when first_page == 0


class _Scratch:
    """Named byte buffers that only grow, so steady-state decoding allocates nothing."""

    def __init__(self) -> None:
        self.bufs: dict[str, Array] = {}
        self.used: set[str] = set()

    def raw(self, name: str, nbytes: int) -> Array:
        self.used.add(name)
        b = self.bufs.get(name)
        if b is None or b.nbytes < nbytes:
            self.bufs.pop(name, None)  # free the old one before allocating the new
            b = self.bufs[name] = np.empty(nbytes, np.uint8)
        return b

    def get(self, name: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Array:
        n = int(np.prod(shape)) * dtype.itemsize
        return self.raw(name, n)[:n].view(dtype).reshape(shape)

    def trim(self) -> None:
        """After a file: drop big buffers it did not need (a run of big files keeps them)."""
        for k in [k for k, b in self.bufs.items() if b.nbytes > _KEEP_BYTES]:
            if k not in self.used:
                del self.bufs[k]
        self.used.clear()


class Decoder:
    """One per process; reusable scratch buffers mean the hot path allocates nothing per file."""

    def __init__(self, spec: ImageSpec) -> None:
        self.spec = spec
        self.interp = _INTERP[spec.interpolation]
        self.t_lo, self.t_hi, self.t_cv = _TARGET[spec.dtype]
        self.t_dtype = np.dtype(spec.dtype)
        self.scratch = _Scratch()

    def decode(
        self, fd: int, path: str, size: int, first_page: int, outs: Sequence[Array]
    ) -> DecodeResult:
        """Decode pages first_page .. first_page+len(outs)-1 (fewer if the file ends) into outs.

        Each out is a writable C-contiguous array of spec.row_shape and spec.dtype, typically
        a view into shared memory; `size` is the fstat size. Raises DecodeError.
        """
        try:
            return self._decode(fd, path, size, first_page, outs)
        except HeaderError as e:
            raise DecodeError(path, e.reason, e.detail) from None
        except MemoryError as e:
            raise DecodeError(path, "out_of_memory", str(e) or "MemoryError") from None
        finally:
            self.scratch.trim()

    def _decode(
        self, fd: int, path: str, size: int, first: int, outs: Sequence[Array]
    ) -> DecodeResult:
        if size <= 0:
            raise DecodeError(path, "empty", "file has 0 bytes")
        ifd = read_first_ifd(fd, size)
        if ifd.width <= 0 or ifd.height <= 0:
            raise DecodeError(path, "corrupt", f"page 0 is {ifd.width}x{ifd.height}")
        self._check_pixels(path, 0, ifd.width * ifd.height * ifd.depth)
        if ifd.data_end > size:
            raise DecodeError(path, "truncated", f"page 0 data ends at {ifd.data_end}, file {size}")
        digest = None
        single = self.spec.pages == "first" or ifd.next_ifd == 0
        route = _route(ifd) if first == 0 and outs and single and size <= _WHOLE_MAX else None
        if route is not None:
            align = ifd.offsets[0] if route == "raw" else 0
            data = self._read_all(fd, path, size, align)
            digest = xxhash.xxh3_128(data.data).hexdigest()
            got = self._raw(ifd, data) if route == "raw" else self._imdecode(ifd, data)
            if got is not None:
                src, bgr = got
                info = PageInfo(0, ifd.height, ifd.width, src.dtype.name, ifd.spp)
                self._convert(src, bgr, outs[0])
                return DecodeResult(1, [info], digest)
        if first == 0 and digest is None:
            digest = self._hash_fd(fd, path, size)
        return self._tifffile(fd, path, size, first, outs, digest)

    def _check_pixels(self, path: str, page: int, pixels: int) -> None:
        if pixels > self.spec.max_pixels:
            raise DecodeError(
                path, "too_large", f"page {page} declares {pixels} pixels > max_pixels"
            )

    def _read_all(self, fd: int, path: str, size: int, align: int) -> Array:
        """The whole file in the scratch buffer, placed so that byte `align` is 64-aligned."""
        buf = self.scratch.raw("file", size + 64)
        shift = -(buf.ctypes.data + align) % 64
        data = buf[shift : shift + size]
        view, got = data.data, 0
        while got < size:
            n = os.preadv(fd, [view[got:]], got)
            if n <= 0:
                raise DecodeError(path, "changed_during_read", f"read {got} of {size} bytes")
            got += n
        return data

    def _hash_fd(self, fd: int, path: str, size: int) -> str:
        h = xxhash.xxh3_128()
        chunk = self.scratch.raw("chunk", min(size, _HASH_CHUNK)).data
        pos = 0
        while pos < size:
            n = os.preadv(fd, [chunk[: min(len(chunk), size - pos)]], pos)
            if n <= 0:
                raise DecodeError(path, "changed_during_read", f"read {pos} of {size} bytes")
            h.update(chunk[:n])
            pos += n
        return h.hexdigest()

    def _raw(self, ifd: Ifd, data: Array) -> tuple[Array, bool]:
        """The pixels as an array over the file buffer (byteswapped into scratch if needed)."""
        dt = _raw_dtype(ifd)
        assert dt is not None
        shape = (ifd.height, ifd.width) if ifd.spp == 1 else (ifd.height, ifd.width, ifd.spp)
        off, n = ifd.offsets[0], int(np.prod(shape)) * dt.itemsize
        px = data[off : off + n].view(dt).reshape(shape)
        if not dt.isnative:
            native = self.scratch.get("swap", shape, dt.newbyteorder("="))
            np.copyto(native, px)
            px = native
        return px, False

    def _imdecode(self, ifd: Ifd, data: Array) -> tuple[Array, bool] | None:
        """libtiff via OpenCV; None when its answer does not match the header."""
        try:
            img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        except cv2.error:
            return None
        want = np.uint8 if ifd.bits[0] == 8 else np.uint16
        if img is None or img.dtype != want or img.shape[:2] != (ifd.height, ifd.width):
            return None
        if (img.shape[2] if img.ndim == 3 else 1) != ifd.spp:
            return None
        return img, img.ndim == 3

    def _tifffile(
        self, fd: int, path: str, size: int, first: int, outs: Sequence[Array], digest: str | None
    ) -> DecodeResult:
        infos: list[PageInfo] = []
        with os.fdopen(os.dup(fd), "rb") as fh:
            fh.seek(0)  # tifffile takes the handle's position as the file's start
            name = os.path.basename(path) or "source.tif"
            tif = _guard(path, tifffile.TiffFile, fh, name=name)
            with tif:
                pages = tif.pages
                total = 1 if self.spec.pages == "first" else _guard(path, len, pages)
                for i, out in zip(range(first, total), outs, strict=False):
                    page = _guard(path, pages.__getitem__, i)
                    shaped = tuple(int(x) for x in page.shaped)
                    if min(shaped) <= 0:  # cv2.resize would fail on it with cv2.error
                        raise DecodeError(path, "corrupt", f"page {i} has empty shape {shaped}")
                    self._check_pixels(path, i, shaped[1] * shaped[2] * shaped[3])
                    ends = [
                        o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=False)
                    ]
                    if max(ends, default=0) > size:
                        raise DecodeError(path, "truncated", f"page {i} data ends past {size}")
                    arr = _guard(path, page.asarray, maxworkers=1)
                    src = _layout(path, page, _guard(path, arr.reshape, shaped))
                    channels = 1 if src.ndim == 2 else src.shape[2]
                    infos.append(PageInfo(i, src.shape[0], src.shape[1], src.dtype.name, channels))
                    self._convert(src, False, out)
        return DecodeResult(total, infos, digest)

    def _convert(self, src: Array, bgr: bool, out: Array) -> None:
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


def _guard(path: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a decoder call; its failures are the file's fault: `corrupt`, with the text."""
    try:
        return fn(*args, **kwargs)
    except (DecodeError, MemoryError):
        raise
    except Exception as e:
        raise DecodeError(path, "corrupt", f"{type(e).__name__}: {e}") from None


def _raw_dtype(ifd: Ifd) -> np.dtype[Any] | None:
    b, fmt = ifd.bits[0], ifd.sample_format
    kind = {1: "u", 2: "i", 3: "f"}.get(fmt)
    if kind is None or b not in (8, 16, 32, 64) or (kind == "f" and b < 32):
        return None
    return np.dtype(f"{ifd.byteorder}{kind}{b // 8}")


def _route(ifd: Ifd) -> str | None:
    """Which fast route page 0 can take: "raw", "cv2", or None for tifffile."""
    if ifd.depth != 1 or ifd.tiled or (ifd.planar != 1 and ifd.spp > 1):
        return None
    if any(b != ifd.bits[0] for b in ifd.bits):
        return None
    gray, rgb = ifd.photometric == 1 and ifd.spp == 1, ifd.photometric == 2 and ifd.spp in (3, 4)
    if ifd.compression == 1 and (gray or rgb) and (dt := _raw_dtype(ifd)) is not None:
        need = ifd.width * ifd.height * ifd.spp * dt.itemsize
        o, c = ifd.offsets, ifd.counts
        contiguous = all(o[k + 1] == o[k] + c[k] for k in range(len(o) - 1))
        return "raw" if contiguous and sum(c) >= need else None
    if ifd.compression in _CV2_CODECS and ifd.bits[0] in (8, 16) and ifd.sample_format == 1:
        ycc = ifd.photometric == 6 and ifd.compression == 7 and ifd.spp == 3
        if gray or (rgb and ifd.spp == 3) or ycc:
            return "cv2"
    return None


def _layout(path: str, page: Any, a: Array) -> Array:
    """tifffile's 5-D (separate samples, depth, height, width, samples) as (H, W[, C])."""
    if a.shape[1] != 1:
        raise DecodeError(path, "unsupported_layout", f"volumetric page (depth {a.shape[1]})")
    a = np.moveaxis(a[:, 0, :, :, 0], 0, -1) if a.shape[0] > 1 else a[0, 0]
    if page.photometric == 3 and page.colormap is not None and a.shape[2] == 1:
        a = np.asarray(page.colormap).T[a[..., 0]]  # palette -> RGB through its colormap
    if page.photometric == 5 or a.shape[2] not in (1, 3, 4):
        raise DecodeError(path, "unsupported_layout", f"{a.shape[2]} samples per pixel")
    return np.ascontiguousarray(a[..., 0] if a.shape[2] == 1 else a)


def decode_file(
    path: str | os.PathLike[str], spec: ImageSpec, root: str | None = None
) -> list[tuple[PageInfo, Array]]:
    """The reference: decodes one file exactly as the worker pool does.

    Same Decoder, fresh outputs, all pages the spec selects, page by page in order.
    """
    p = os.fspath(path)
    dec = Decoder(spec)
    fd, st = open_source(p, root)
    rows: list[tuple[PageInfo, Array]] = []
    try:
        while True:
            outs = [np.empty(spec.row_shape, spec.dtype) for _ in range(_CHUNK)]
            res = dec.decode(fd, p, st.st_size, len(rows), outs)
            rows += zip(res.pages, outs, strict=False)
            if not res.pages or len(rows) >= res.pages_total:
                return rows
    finally:
        os.close(fd)
