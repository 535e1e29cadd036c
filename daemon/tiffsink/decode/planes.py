"""Which pages of a file are its planes: the rows of `pages = "all"`.

A plane page is one whose NewSubfileType (tag 254) has neither the reduced-resolution bit
(1) nor the mask bit (4); an old-style SubfileType (tag 255) of 2 counts as reduced, as
libtiff maps it. Where no page qualifies, page 0 is the plane. This is what tifffile's
main series and libtiff's directory types mean. Overviews (pyramid levels, thumbnails)
and masks (GeoTIFF transparency) are not rows, but they are counted, so the outcome can
say so: a page with the mask bit is a mask (also a reduced one: the mask of an
overview), any other non-plane page an overview.

The chain is walked with small preads and ends where tifffile ends it: an offset outside
the file, an IFD with no or more than 4096 entries or cut by the end of the file, or a
loop. Every task of a multi-page file needs the walk, so the last one is kept per file
version (the tuple is replaced whole: Dask runs tasks in threads).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from .tiffheader import HeaderError, check_magic

NEW_SUBFILE, OLD_SUBFILE = 254, 255
REDUCED, MASK = 1, 4
OLD_REDUCED = 2  # SubfileType 2: reduced-resolution image
_MAX_ENTRIES = 4096
_WINDOW = 4096  # one pread covers a typical IFD's count, entries and next offset
_INLINE = {3: "H", 4: "I", 13: "I", 16: "Q", 18: "Q"}  # integer types tags 254/255 use


@dataclass(frozen=True)
class Chain:
    """A file's pages: each IFD's offset and subfile type, and which pages are rows."""

    ifds: tuple[int, ...]  # offset of every page's IFD, in chain order
    kinds: tuple[int, ...]  # NewSubfileType of each page (SubfileType 2 read as 1)
    planes: tuple[int, ...]  # the page numbers that are rows, in order
    overview: int  # reduced-resolution pages skipped
    mask: int  # mask pages skipped


def is_plane(kind: int) -> bool:
    """Whether a page of this NewSubfileType is a plane (neither reduced nor a mask)."""
    return not kind & (REDUCED | MASK)


def classify(kinds: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
    """(plane pages, overviews skipped, masks skipped) for pages of these subfile types."""
    planes = tuple(i for i, k in enumerate(kinds) if is_plane(k))
    if not planes:  # nothing qualifies: page 0 is the plane (a lone thumbnail, a camera JPEG)
        planes = (0,)
    skipped = [k for i, k in enumerate(kinds) if i not in planes]
    mask = sum(1 for k in skipped if k & MASK)
    return planes, len(skipped) - mask, mask


def walk(fd: int, size: int) -> Chain:
    """The chain of the file open on `fd` (fstat size `size`); cached per file version."""
    global _last
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    last = _last
    if last is not None and last[0] == key:
        return last[1]
    ifds, kinds = _walk(fd, size)
    planes, overview, mask = classify(kinds) if kinds else ((0,), 0, 0)
    chain = Chain(ifds, kinds, planes, overview, mask)
    _last = (key, chain)
    return chain


_last: tuple[tuple[int, int, int, int], Chain] | None = None


def _walk(fd: int, size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    head = os.pread(fd, 16, 0)
    try:
        bo, big = check_magic(head)
    except HeaderError:
        return (), ()
    off_fmt, cnt_fmt, ent = ("Q", "Q", 20) if big else ("I", "H", 12)
    osz, csz = struct.calcsize(off_fmt), struct.calcsize(cnt_fmt)
    if len(head) < (16 if big else 8):
        return (), ()
    (ifd,) = struct.unpack_from(bo + off_fmt, head, 8 if big else 4)
    entry = struct.Struct(bo + "HH" + off_fmt)
    ifds: list[int] = []
    kinds: list[int] = []
    seen: set[int] = set()
    while 8 <= ifd < size and ifd not in seen:
        seen.add(ifd)
        buf = os.pread(fd, min(_WINDOW, size - ifd), ifd)
        if len(buf) < csz:
            break
        (n,) = struct.unpack_from(bo + cnt_fmt, buf)
        need = csz + n * ent + osz
        if n == 0 or n > _MAX_ENTRIES or ifd + need > size:
            break
        if len(buf) < need:
            buf = os.pread(fd, need, ifd)
            if len(buf) < need:
                break
        new, old = 0, 0
        for k in range(n):
            tag, typ, count = entry.unpack_from(buf, csz + k * ent)
            if tag in (NEW_SUBFILE, OLD_SUBFILE) and count == 1 and typ in _INLINE:
                (v,) = struct.unpack_from(bo + _INLINE[typ], buf, csz + k * ent + entry.size)
                new, old = (v, old) if tag == NEW_SUBFILE else (new, v)
        ifds.append(ifd)
        kinds.append(new if new or old != OLD_REDUCED else REDUCED)
        (ifd,) = struct.unpack_from(bo + off_fmt, buf, csz + n * ent)
    return tuple(ifds), tuple(kinds)
