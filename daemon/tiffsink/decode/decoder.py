"""Decode one TIFF, read through an already-open descriptor, into rows of the image spec.

Three routes, cheapest first, chosen from a minimal parse of IFD 0 (tiffheader):
  raw     uncompressed contiguous page 0: the whole file is read once into a reusable
          buffer, hashed there, and the pixel bytes are resized straight into the output;
  cv2     LZW / PackBits / JPEG, 8/16-bit gray or RGB: cv2.imdecode of those same bytes
          (libtiff's LZW is ~1.7x faster than imagecodecs'); a result that disagrees with
          the header falls through to tifffile;
  tifffile everything else and every page after 0 (tiles, deflate, zstd, planar, float...).
After tifffile, Pillow and then libtiff (page 0) are tried for what tifffile refuses. The
declared geometry is checked against the size limits before anything is allocated, and
every decoder failure becomes a DecodeError with a short reason.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np
import tifffile
import xxhash

from ..config import ImageSpec
from ..errors import DecodeError
from . import pagedigest
from .convert import Converter
from .fallback import Fallbacks
from .limits import Limits, bytes_per_sample
from .planes import is_plane, walk
from .safeopen import open_source
from .scratch import Array, Scratch
from .tiffheader import HeaderError, Ifd, read_first_ifd
from .tiffpages import guard, page_samples

_CV2_CODECS = frozenset((5, 7, 32773))  # LZW, JPEG, PackBits
# tifffile failures that another reader may not share: worth trying the fallbacks.
_READER_SPECIFIC = frozenset(("corrupt", "unsupported_layout"))
_WHOLE_MAX = 256 << 20  # files up to this size are read whole (fast routes); larger stream
_HASH_CHUNK = 8 << 20
_CHUNK = 8  # pages per Decoder.decode call in decode_file, like a worker's slots


class PageInfo(NamedTuple):
    """The SOURCE page's geometry (the row's geometry is the spec's), and what the page
    shows. A NamedTuple: one crosses the worker pipe per page (see pipeline/messages)."""

    page: int
    height: int
    width: int
    dtype: str
    channels: int
    meta: str = "{}"  # what the page shows, JSON (decode/metadata.py; filled by the worker)
    digest: str = ""  # its stored bytes' digest (pagedigest.py); "" if it has none


@dataclass
class DecodeResult:
    """What one `Decoder.decode` call wrote, and the file facts found on the way."""

    pages_total: int  # rows this file contributes: its planes (1 when spec.pages == "first")
    pages: list[PageInfo]  # pages decoded by this call; pages[i] went to outs[i]
    content_hash: str | None  # xxh3_128 of the whole file; only when first_page == 0
    overview: int = 0  # reduced-resolution pages that are not rows (decode/planes.py)
    mask: int = 0  # mask pages that are not rows


class Decoder:
    """Picks the route for a file and decodes its pages into output rows.

    One per worker process (or per `decode_file` call); it owns the scratch buffers, so
    the hot path allocates nothing per file.
    """

    def __init__(self, spec: ImageSpec) -> None:
        quiet_libtiff()
        self.spec = spec
        self.scratch = Scratch()
        self.converter = Converter(spec, self.scratch)
        self.limits = Limits(spec)

    def decode(
        self, fd: int, path: str, size: int, first_page: int, outs: Sequence[Array]
    ) -> DecodeResult:
        """Decode the file's planes first_page .. first_page+len(outs)-1 (fewer if the file
        ends) into outs. Plane k is the k-th page that is a row (decode/planes.py); each
        PageInfo names its page number in the file.

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
        ifd, header_error = self._header(fd, path, size)
        # One page to read and it is page 0: a single-page file, or a stack whose first
        # page is a plane under pages = "first". Anything else walks the chain for planes.
        single = ifd is not None and (
            ifd.next_ifd == 0 or (self.spec.pages == "first" and is_plane(ifd.subfile))
        )
        digest = None
        fast = single and first == 0 and bool(outs) and size <= _WHOLE_MAX
        route = _route(ifd) if fast and ifd is not None else None
        if ifd is not None and route is not None:
            align = ifd.offsets[0] if route == "raw" else 0
            data = self._read_all(fd, path, size, align)
            # One pass, cache-hot: the file's content hash and page 0's digest together.
            digest, page_digest = pagedigest.with_content_hash(ifd, data.data)
            got = self._raw(ifd, data) if route == "raw" else self._imdecode(ifd, data)
            if got is not None:
                src, bgr = got
                info = PageInfo(
                    0, ifd.height, ifd.width, src.dtype.name, ifd.spp, "{}", page_digest
                )
                self.converter.convert(src, bgr, outs[0])
                return DecodeResult(1, [info], digest)
        if first == 0 and digest is None:
            digest = self.content_hash(fd, path, size)
        planes: tuple[int, ...] = (0,)
        pages, overview, mask = 1, 0, 0
        if not single:
            chain = walk(fd, size)
            planes, pages = chain.planes, max(1, len(chain.ifds))
            overview, mask = chain.overview, chain.mask
            if self.spec.pages == "first":
                planes, overview, mask = planes[:1], 0, 0
        wanted = planes[first : first + len(outs)]
        infos = self._pages(fd, path, size, wanted, outs, (ifd, header_error, pages))
        return DecodeResult(len(planes), infos, digest, overview, mask)

    def _pages(
        self,
        fd: int,
        path: str,
        size: int,
        wanted: Sequence[int],
        outs: Sequence[Array],
        head: tuple[Ifd | None, DecodeError | None, int],
    ) -> list[PageInfo]:
        """Pages `wanted` (page numbers) into outs: tifffile, then the fallbacks, per page.

        A page no reader decodes fails the file and names the page (where the file has
        more than one: `head` is IFD 0, the header parser's verdict, and the page count);
        for page 0 the header parser's reason, if it had one, is the one reported.
        """
        ifd, header_error, n_pages = head
        infos: list[PageInfo] = []
        if not wanted:
            return infos
        fb = Fallbacks(self.converter, self.limits, self._read_all, fd, path, size, ifd)
        with os.fdopen(os.dup(fd), "rb") as fh:
            fh.seek(0)  # tifffile takes the handle's position as the file's start
            name = os.path.basename(path) or "source.tif"
            tif: Any = None
            opened: DecodeError | None = None
            try:
                tif = guard(path, tifffile.TiffFile, fh, name=name)
            except DecodeError as e:
                if e.reason not in _READER_SPECIFIC:
                    raise
                opened = e
            try:
                for i, out in zip(wanted, outs, strict=False):
                    got: PageInfo | DecodeError | None = opened
                    if tif is not None:
                        got = self._tifffile_page(tif, fd, path, size, i, out)
                    if isinstance(got, PageInfo):
                        infos.append(got)
                        continue
                    src = fb.page(i, out)
                    if src is None:
                        assert got is not None
                        raise _named(header_error if i == 0 and header_error else got, path, i,
                                     n_pages)  # fmt: skip
                    infos.append(_info(i, src))
            finally:
                if tif is not None:
                    tif.close()
        return infos

    def _tifffile_page(
        self, tif: Any, fd: int, path: str, size: int, i: int, out: Array
    ) -> PageInfo | DecodeError:
        """Page i through tifffile into out; a failure another reader may not share is
        returned (for the fallbacks to try), any other raised."""
        try:
            page = guard(path, tif.pages.__getitem__, i)
            src = page_samples(path, size, i, page, self.limits)
        except DecodeError as e:
            if e.reason not in _READER_SPECIFIC:
                raise
            return e
        self.converter.convert(src, False, out)
        buf = self.scratch.raw("digest", min(pagedigest.CHUNK, size)).data
        return _info(i, src, pagedigest.at_offset(fd, size, page.offset, buf))

    def _header(self, fd: int, path: str, size: int) -> tuple[Ifd | None, DecodeError | None]:
        """IFD 0 from tiffsink's own parser, checked against the limits.

        Only `not_tiff` and `too_large` are final here; any other header trouble is left to
        the full readers (libtiff and Pillow forgive what this parser does not), and is
        reported only if they fail too.
        """
        try:
            ifd = read_first_ifd(fd, size)
        except HeaderError as e:
            err = DecodeError(path, e.reason, e.detail)
            if e.reason == "not_tiff":
                raise err from None
            return None, err
        if ifd.width <= 0 or ifd.height <= 0:
            return None, DecodeError(path, "corrupt", f"page 0 is {ifd.width}x{ifd.height}")
        self.limits.check(
            path, 0, ifd.width, ifd.height, ifd.depth, ifd.spp, bytes_per_sample(max(ifd.bits))
        )
        if ifd.data_end > size:
            err = DecodeError(path, "truncated", f"page 0 data ends at {ifd.data_end}, file {size}")
            return None, err
        return ifd, None

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

    def content_hash(self, fd: int, path: str, size: int) -> str:
        """xxh3-128 of the whole file (what the index records as its content_hash)."""
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


def quiet_libtiff() -> None:
    """OpenCV 5 logs libtiff's warnings about odd files to stderr, one unstructured line
    per file (a flood in the journal); a file's real problems are failures with reasons,
    so only OpenCV's errors are kept."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is not None:
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)


def _info(page: int, src: Array, digest: str = "") -> PageInfo:
    """The source geometry of a page as decoded (before resizing), and its digest."""
    channels = 1 if src.ndim == 2 else src.shape[2]
    return PageInfo(page, src.shape[0], src.shape[1], src.dtype.name, channels, "{}", digest)


def _named(e: DecodeError, path: str, page: int, pages: int) -> DecodeError:
    """The failure of page `page`, naming it where the file has several pages."""
    if pages <= 1 or f"page {page}" in e.detail:
        return e
    return DecodeError(path, e.reason, f"page {page}: {e.detail}")


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
