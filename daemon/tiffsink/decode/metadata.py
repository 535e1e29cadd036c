"""What each row shows: acquisition metadata from the file, and keys from its path.

Read in the worker, next to the decode, from IFD 0's few descriptive tags (a few small
preads: the decode's fast path is untouched) and, for the planes of a multi-page file,
from the layout the file declares:
  - OME-XML (ImageDescription): per Plane z/c/t, DeltaT, ExposureTime, stage position;
    channel names; PhysicalSizeX/Y; AcquisitionDate;
  - ImageJ (ImageDescription "ImageJ=..."): channels/slices/frames in CZT order,
    spacing, unit and finterval;
  - Micro-Manager (tag 51123, JSON in every page's IFD, the chain walked once per task):
    indices, channel, elapsed time, exposure, stage and pixel size;
  - standard tags: DateTime, X/YResolution with ResolutionUnit, Make, Model, Software.
Metadata never costs a file: whatever cannot be read is left out, with one warning.
Path keys (`[metadata] path_pattern`) win over the file's for the same key.
"""

from __future__ import annotations

import json
import os
import re
import struct
from typing import Any

from ..config import MetadataConfig
from ..config.pattern import compile_path_pattern
from . import omexml
from .tiffheader import HeaderError, check_magic

DESCRIPTION, MAKE, MODEL, SOFTWARE, DATETIME = 270, 271, 272, 305, 306
XRES, YRES, RES_UNIT, MICROMANAGER = 282, 283, 296, 51123
_WANTED = {DESCRIPTION, MAKE, MODEL, SOFTWARE, DATETIME, XRES, YRES, RES_UNIT, MICROMANAGER}
_MAX_TEXT = 16 << 20  # a description larger than this is not metadata we parse
_UM_PER_UNIT = {2: 25400.0, 3: 10000.0}  # ResolutionUnit inch, centimetre
# What malformed metadata raises (ET.ParseError is a SyntaxError): never a lost file.
_UNREADABLE = (HeaderError, OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error)
_IJ_UNITS = {"micron": 1.0, "um": 1.0, "µm": 1.0, "\\u00B5m": 1.0, "nm": 1e-3, "mm": 1e3}


def read_tags(fd: int, size: int, ifd: int | None = None) -> dict[int, Any]:
    """IFD 0's (or the IFD at `ifd`'s) descriptive tags: text as str, rationals as float."""
    head = os.pread(fd, 16, 0)  # small reads only: this runs once per file, next to decode
    bo, big = check_magic(head)
    off_fmt, cnt_fmt, ent = ("Q", "Q", 20) if big else ("I", "H", 12)
    if ifd is None:  # IFD 0
        (ifd,) = struct.unpack_from(bo + off_fmt, head, 8 if big else 4)
    csz = struct.calcsize(cnt_fmt)
    (n,) = struct.unpack(bo + cnt_fmt, _read(fd, size, ifd, csz))
    table = _read(fd, size, ifd + csz, min(n, 4096) * ent)
    entry = struct.Struct(bo + "HH" + off_fmt)
    out: dict[int, Any] = {}
    for k in range(min(n, 4096)):
        tag, typ, count = entry.unpack_from(table, k * ent)
        if tag not in _WANTED:
            continue
        width = {2: 1, 3: 2, 4: 4, 5: 8, 1: 1, 7: 1}.get(typ)
        if width is None or not 0 < count * width <= _MAX_TEXT:
            continue
        nbytes = count * width
        inline = table[k * ent + entry.size : (k + 1) * ent]
        if nbytes <= len(inline):
            raw = inline[:nbytes]
        else:
            (at,) = struct.unpack(bo + off_fmt, inline)
            raw = _read(fd, size, at, nbytes)
        if typ in (1, 2, 7):
            out[tag] = raw.rstrip(b"\0").decode("utf-8", "replace")
        elif typ == 5:
            num, den = struct.unpack(bo + "II", raw[:8])
            out[tag] = num / den if den else 0.0
        else:
            out[tag] = struct.unpack(bo + ("H" if typ == 3 else "I"), raw[:width])[0]
    return out


def _read(fd: int, size: int, offset: int, n: int) -> bytes:
    if offset < 0 or offset + n > size:
        raise HeaderError("truncated", f"tag data at {offset}+{n} past the end")
    return os.pread(fd, n, offset)


def _standard(tags: dict[int, Any]) -> dict[str, Any]:
    """Keys from the standard TIFF tags."""
    out: dict[str, Any] = {}
    parts = [str(tags[t]).strip() for t in (MAKE, MODEL, SOFTWARE) if str(tags.get(t, "")).strip()]
    if parts:
        out["instrument"] = " ".join(parts)
    m = re.fullmatch(r"(\d{4}):(\d\d):(\d\d) (\d\d:\d\d:\d\d)", str(tags.get(DATETIME, "")).strip())
    if m:
        out["acquired_at"] = f"{m[1]}-{m[2]}-{m[3]}T{m[4]}"
    per = _UM_PER_UNIT.get(int(tags.get(RES_UNIT, 2)))
    if per and tags.get(XRES) and tags.get(YRES):
        out["pixel_size_um"] = [round(per / tags[YRES], 6), round(per / tags[XRES], 6)]
    return out


def _imagej(text: str, tags: dict[int, Any], page: int) -> dict[str, Any]:
    """An ImageJ hyperstack description: planes in CZT order (channel fastest)."""
    kv = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    c, z = int(kv.get("channels", 1)), int(kv.get("slices", 1))
    out: dict[str, Any] = {"c": page % c, "z": (page // c) % z, "t": page // (c * z)}
    scale = _IJ_UNITS.get(kv.get("unit", "").strip())
    if scale and tags.get(XRES) and tags.get(YRES):
        out["pixel_size_um"] = [round(scale / tags[YRES], 6), round(scale / tags[XRES], 6)]
    if "finterval" in kv:
        out["time_s"] = round(out["t"] * float(kv["finterval"]), 6)
    if scale and "spacing" in kv:
        out["stage_um"] = [None, None, round(out["z"] * float(kv["spacing"]) * scale, 6)]
    return out


def _micromanager(text: str) -> dict[str, Any]:
    """One page's Micro-Manager JSON."""
    d = json.loads(text)
    out: dict[str, Any] = {}
    for key, name in (("ChannelIndex", "c"), ("SliceIndex", "z"), ("FrameIndex", "t")):
        if key in d:
            out[name] = int(d[key])
    if "Channel" in d:
        out["channel"] = str(d["Channel"])
    if "ElapsedTime-ms" in d:
        out["time_s"] = float(d["ElapsedTime-ms"]) / 1000
    if "Exposure-ms" in d:
        out["exposure_s"] = float(d["Exposure-ms"]) / 1000
    pos = [d.get(k) for k in ("XPositionUm", "YPositionUm", "ZPositionUm")]
    if any(p is not None for p in pos):
        out["stage_um"] = [None if p is None else float(p) for p in pos]
    if d.get("PixelSizeUm"):
        out["pixel_size_um"] = [float(d["PixelSizeUm"])] * 2
    return out


class MetadataReader:
    """One per worker: the compiled path pattern, and per-file extraction."""

    def __init__(self, config: MetadataConfig) -> None:
        self.config = config
        # RE2, linear time: a pattern can never stall a worker (config/pattern.py).
        self.pattern = compile_path_pattern(config.path_pattern) if config.path_pattern else None

    def path_keys(self, path: str, root: str | None) -> dict[str, Any] | None:
        """The pattern's named groups for this path (relative to its root); None when the
        pattern does not match. Digit-only values become integers."""
        if self.pattern is None:
            return {}
        rel = os.path.relpath(path, root) if root else os.path.basename(path)
        m = self.pattern.search(rel)
        if m is None:
            return None
        return {
            k: int(v) if v.isdigit() and len(v) < 16 else v
            for k, v in m.groupdict().items()
            if v is not None
        }

    def pages(
        self, fd: int, size: int, first: int, count: int, path_keys: dict[str, Any]
    ) -> tuple[list[str], str | None]:
        """JSON meta of pages first..first+count-1, and a warning if some could not be read."""
        warning = None
        metas: list[dict[str, Any]] = [{} for _ in range(count)]
        try:
            tags = read_tags(fd, size)
            base = _standard(tags)
            text = str(tags.get(DESCRIPTION, ""))
            if MICROMANAGER in tags:  # one JSON tag per page: walk the IFDs once
                ifds = _ifd_offsets(fd, size, first, count)
                for i, ifd in enumerate(ifds):
                    mm = read_tags(fd, size, ifd).get(MICROMANAGER)
                    metas[i] = {**base, **(_micromanager(str(mm)) if mm else {})}
            else:
                for i in range(count):
                    metas[i] = {**base, **self._plane(text, tags, first + i)}
        except (
            HeaderError,
            OSError,
            ValueError,
            SyntaxError,
            KeyError,
            TypeError,
            struct.error,
        ) as e:
            warning = f"{type(e).__name__}: {e}"
        return [json.dumps({**m, **path_keys}, separators=(",", ":")) for m in metas], warning

    def _plane(self, text: str, tags: dict[int, Any], page: int) -> dict[str, Any]:
        """A plane's keys from the layout IFD 0's description declares."""
        head = text.lstrip()[:64]
        if head.startswith("<?xml") or head.startswith("<OME"):
            return omexml.plane(text, page)
        if text.startswith("ImageJ="):
            return _imagej(text, tags, page)
        return {}


def _ifd_offsets(fd: int, size: int, first: int, count: int) -> list[int]:
    """Offsets of IFDs first..first+count-1 (fewer if the chain ends), walking the chain
    once from IFD 0; each step is bounded by the file size."""
    head = os.pread(fd, 16, 0)
    bo, big = check_magic(head)
    off_fmt, cnt_fmt, ent = ("Q", "Q", 20) if big else ("I", "H", 12)
    (ifd,) = struct.unpack_from(bo + off_fmt, head, 8 if big else 4)
    csz, osz = struct.calcsize(cnt_fmt), struct.calcsize(off_fmt)
    out: list[int] = []
    for page in range(first + count):
        if ifd == 0:
            break
        if page >= first:
            out.append(ifd)
        (n,) = struct.unpack(bo + cnt_fmt, _read(fd, size, ifd, csz))
        (ifd,) = struct.unpack(bo + off_fmt, _read(fd, size, ifd + csz + n * ent, osz))
    return out
