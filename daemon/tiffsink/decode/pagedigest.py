"""A page's digest: what tells that two versions of a file hold the same page, byte for byte.

xxh3-64 of the page's geometry (the tags that decide how its bytes decode, and how they
are cut into strips or tiles) followed by its strips or tiles exactly as stored. Not of
the IFD's bytes: tifffile's `append=True` patches the last IFD's next-page pointer, and a
writer that rewrites a growing stack whole moves every page's data and rewrites page 0's
description (`{"shape": [n, ...]}`), yet each page's stored bytes stay the same.

Always computed from tiffsink's own IFD parser (tiffheader), whichever route decoded the
page, so the same page gets the same digest. The decoder puts it in each PageInfo, the
index keeps it per row, and `committed_prefix` compares a new version's first pages with
the committed ones, so a file that grew by whole pages adds only its new pages.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Sequence

import xxhash

from .tiffheader import HeaderError, Ifd, open_reader, read_ifd

CHUNK = 8 << 20  # bytes read per pread while hashing a page's data from the file
_PIECE = 256 << 10  # what stays in cache between the two hashes of one pass


def _geometry(ifd: Ifd) -> bytes:
    fixed = (ifd.width, ifd.height, ifd.depth, ifd.spp, ifd.sample_format, ifd.compression,
             ifd.photometric, ifd.planar, ifd.predictor, int(ifd.tiled))  # fmt: skip
    n = len(ifd.bits), len(ifd.counts)
    return (
        ifd.byteorder.encode()
        + struct.pack(f"<{len(fixed) + 2}q", *fixed, *n)
        + struct.pack(f"<{n[0] + n[1]}q", *ifd.bits, *ifd.counts)
    )


def _ranges(ifd: Ifd) -> list[tuple[int, int]]:
    """The page's strips or tiles as (offset, length), neighbours merged."""
    out: list[tuple[int, int]] = []
    for o, c in zip(ifd.offsets, ifd.counts, strict=True):
        if out and out[-1][0] + out[-1][1] == o:
            out[-1] = (out[-1][0], out[-1][1] + c)
        else:
            out.append((o, c))
    return out


def of_buffer(ifd: Ifd, data: memoryview) -> str:
    """The digest of a page whose file is in memory (the fast routes read files whole)."""
    h = xxhash.xxh3_64(_geometry(ifd))
    for o, c in _ranges(ifd):
        h.update(data[o : o + c])
    return str(h.hexdigest())


def with_content_hash(ifd: Ifd, data: memoryview) -> tuple[str, str]:
    """(xxh3-128 of the whole file, page 0's digest) in one pass over a file in memory.

    The fast routes hash every file anyway; feeding both hashes the same cache-sized
    pieces costs about half what a second pass over the pixels would (0.2 vs 0.3-0.45 ms
    per 8 MiB frame here)."""
    content = xxhash.xxh3_128()
    ranges = _ranges(ifd)
    ordered = all(a[0] + a[1] <= b[0] for a, b in itertools.pairwise(ranges))
    if not ordered:  # strips out of file order: the digest follows strip order
        content.update(data)
        return str(content.hexdigest()), of_buffer(ifd, data)
    page = xxhash.xxh3_64(_geometry(ifd))
    size, k = len(data), 0
    for start in range(0, size, _PIECE):
        end = min(size, start + _PIECE)
        content.update(data[start:end])
        while k < len(ranges):
            o, c = ranges[k]
            lo, hi = max(o, start), min(o + c, end)
            if lo < hi:
                page.update(data[lo:hi])
            if o + c > end:
                break  # this range goes on in the next piece
            k += 1
    return str(content.hexdigest()), str(page.hexdigest())


def of_file(fd: int, size: int, ifd: Ifd, buf: memoryview | None = None) -> str:
    """The digest of a page read from the file (pages after the first, other routes);
    `buf` is scratch space to read into (a small one is made when none is given)."""
    if ifd.data_end > size:
        raise HeaderError("truncated", f"page data ends at {ifd.data_end}, file {size}")
    h = xxhash.xxh3_64(_geometry(ifd))
    ranges = _ranges(ifd)
    view = buf if buf else memoryview(bytearray(min(CHUNK, max((c for _, c in ranges), default=1))))
    for o, c in ranges:
        pos, end = o, o + c
        while pos < end:
            n = os.preadv(fd, [view[: min(len(view), end - pos)]], pos)
            if n <= 0:
                raise HeaderError("changed_during_read", f"short read at {pos}")
            h.update(view[:n])
            pos += n
    return str(h.hexdigest())


def at_offset(fd: int, size: int, offset: int, buf: memoryview | None = None) -> str:
    """The digest of the page whose IFD is at `offset` ("" when its IFD cannot be read
    by tiffsink's parser: such a page is never taken as unchanged)."""
    try:
        r, bo, big = open_reader(fd, size)
        return of_file(fd, size, read_ifd(r, bo, big, offset), buf)
    except (HeaderError, OSError, struct.error, ValueError):
        return ""


def committed_prefix(
    fd: int, size: int, committed: Sequence[str], buf: memoryview | None = None
) -> tuple[int, bool] | None:
    """Does this file begin with exactly the committed pages, page for page?

    `committed` are the digests of the file's committed pages 0..k-1. Returns (k, whether
    the file has a page after them), or None when a page differs, is missing, or cannot
    be read: then the file is a new version and all its pages become rows.
    """
    if not committed or "" in committed:
        return None
    try:
        r, bo, big = open_reader(fd, size)
        if big:
            (offset,) = struct.unpack(bo + "Q", r.read(8, 8))
        else:
            (offset,) = struct.unpack(bo + "I", r.read(4, 4))
        seen: set[int] = set()
        ifd = None
        for want in committed:
            if offset == 0 or offset in seen:
                return None  # fewer pages than were committed (or a loop)
            seen.add(offset)
            ifd = read_ifd(r, bo, big, offset)
            if of_file(fd, size, ifd, buf) != want:
                return None
            offset = ifd.next_ifd
    except (HeaderError, OSError, struct.error, ValueError):
        return None
    return len(committed), offset != 0
