"""The descriptive tags of one IFD, read with a few small preads (metadata, not pixels).

Only the tags some metadata source reads are kept: text as str (every ImageDescription,
since Micro-Manager writes OME-XML and ImageJ's description as two tags in IFD 0),
rationals as float, integers as int, and for vendor structures that their own parsers
read (MetaMorph's UIC1, Zeiss's CZ_LSMINFO, the EXIF IFD) the offset of their data.
Every read is bounded by the file size.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from .tiffheader import HeaderError, check_magic

DESCRIPTION, MAKE, MODEL, SOFTWARE, DATETIME = 270, 271, 272, 305, 306
XRES, YRES, RES_UNIT, MICROMANAGER = 282, 283, 296, 51123
FEI_SFEG, FEI_HELIOS, UIC1, LSMINFO = 34680, 34682, 33628, 34412
EXIF, EXPOSURE_TIME, DATETIME_ORIGINAL = 34665, 33434, 36867
_TEXT = {DESCRIPTION, MAKE, MODEL, SOFTWARE, DATETIME, MICROMANAGER, FEI_SFEG, FEI_HELIOS,
         DATETIME_ORIGINAL}  # fmt: skip
_NUMBER = {XRES, YRES, RES_UNIT, EXPOSURE_TIME}
_POINTER = {UIC1, LSMINFO, EXIF}  # kept as (offset of the data, count)
_WANTED = _TEXT | _NUMBER | _POINTER
_WIDTH = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 13: 4, 16: 8, 18: 8}
MAX_TEXT = 16 << 20  # a description larger than this is not metadata we parse
MAX_ENTRIES = 4096


def first_ifd(fd: int) -> tuple[str, bool, int]:
    """(byte order, BigTIFF, offset of IFD 0)."""
    head = os.pread(fd, 16, 0)
    bo, big = check_magic(head)
    if len(head) < (16 if big else 8):
        raise HeaderError("truncated", "file shorter than its header")
    (ifd,) = struct.unpack_from(bo + ("Q" if big else "I"), head, 8 if big else 4)
    return bo, big, ifd


def read_at(fd: int, size: int, offset: int, n: int) -> bytes:
    """n bytes at offset, or HeaderError where they are not all in the file."""
    if offset < 0 or n < 0 or offset + n > size:
        raise HeaderError("truncated", f"tag data at {offset}+{n} past the end")
    return os.pread(fd, n, offset)


def read_tags(fd: int, size: int, ifd: int | None = None) -> dict[int, Any]:
    """The wanted tags of IFD 0 (or of the IFD at `ifd`); DESCRIPTION is a list."""
    bo, big, first = first_ifd(fd)
    ifd = first if ifd is None else ifd
    off_fmt, cnt_fmt, ent = ("Q", "Q", 20) if big else ("I", "H", 12)
    csz = struct.calcsize(cnt_fmt)
    (n,) = struct.unpack(bo + cnt_fmt, read_at(fd, size, ifd, csz))
    n = min(n, MAX_ENTRIES)
    table = read_at(fd, size, ifd + csz, n * ent)
    entry = struct.Struct(bo + "HH" + off_fmt)
    out: dict[int, Any] = {}
    for k in range(n):
        tag, typ, count = entry.unpack_from(table, k * ent)
        width = _WIDTH.get(typ)
        if tag not in _WANTED or width is None or not 0 < count * width <= MAX_TEXT:
            continue
        nbytes = count * width
        inline = table[k * ent + entry.size : (k + 1) * ent]
        (at,) = struct.unpack(bo + off_fmt, inline)
        if tag in _POINTER:
            out[tag] = (at if nbytes > len(inline) else _int(bo, typ, inline), count)
            continue
        raw = inline[:nbytes] if nbytes <= len(inline) else read_at(fd, size, at, nbytes)
        if tag in _TEXT:
            text = raw.rstrip(b"\0").decode("utf-8", "replace")
            if tag == DESCRIPTION:
                out.setdefault(tag, []).append(text)
            else:
                out[tag] = text
        elif typ == 5:
            num, den = struct.unpack(bo + "II", raw[:8])
            out[tag] = num / den if den else 0.0
        elif typ in (3, 4, 13, 16):
            out[tag] = _int(bo, typ, raw)
    return out


def _int(bo: str, typ: int, raw: bytes) -> int:
    code = {3: "H", 4: "I", 13: "I", 16: "Q", 18: "Q", 1: "B"}.get(typ, "I")
    (v,) = struct.unpack_from(bo + code, raw)
    return int(v)
