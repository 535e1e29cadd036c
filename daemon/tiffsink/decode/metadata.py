"""What each row shows: acquisition metadata from the file, and keys from its path.

Read in the worker, next to the decode, from the descriptive tags of IFD 0 and of each
row's own page (a few small preads; the decode's fast path is untouched). Every source
that the file has is read, and for each key the best source wins. From least to most
trusted (a later source overrides an earlier one for the keys both give):
  1. standard tags: Make/Model (instrument), DateTime or EXIF DateTimeOriginal,
     EXIF ExposureTime, X/YResolution with ResolutionUnit, only where they are a
     calibration (72 and 96 dpi are display defaults, not a pixel size);
  2. ImageJ (ImageDescription "ImageJ=..."): hyperstack order, unit with resolution,
     spacing, finterval;
  3. Micro-Manager's summary (the file header): z step, pixel size, start time;
  4. the vendor's own metadata (vendors.py): FEI, MetaMorph/STK, Aperio, Zeiss LSM;
  5. OME-XML (omexml.py), read whether or not Micro-Manager tags exist;
  6. Micro-Manager's per-page JSON (micromanager.py): NDTiff `Axes` first, then the 1.4
     indices, channel, elapsed time, exposure, stage and pixel size.
`software` is the Software tag where there is one, else what the sources name (OME
Creator, Aperio's header, Micro-Manager's version, ImageJ's). Then the file's counts of
skipped overview and mask pages, then the path keys (`[metadata] path_pattern`), which
win over the file's. Metadata never costs a file: a source that cannot be read is left
out, with one warning.
"""

from __future__ import annotations

import functools
import json
import os
import re
import struct
from typing import Any

from ..config import MetadataConfig
from ..config.pattern import compile_path_pattern
from . import micromanager, omexml, vendors
from .planes import walk
from .tiffheader import HeaderError
from .tifftags import (
    DATETIME,
    DATETIME_ORIGINAL,
    DESCRIPTION,
    EXIF,
    EXPOSURE_TIME,
    FEI_HELIOS,
    FEI_SFEG,
    LSMINFO,
    MAKE,
    MICROMANAGER,
    MODEL,
    RES_UNIT,
    SOFTWARE,
    UIC1,
    XRES,  # fmt: skip
    YRES,
    read_tags,
)

_UM_PER_UNIT = {2: 25400.0, 3: 10000.0}  # ResolutionUnit inch, centimetre
_DISPLAY_DPI = (72.0, 96.0)  # screen defaults writers put in: not a calibration
# What malformed metadata raises (ET.ParseError is a SyntaxError): never a lost file.
_UNREADABLE = (HeaderError, OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error,
               IndexError, OverflowError)  # fmt: skip
_IJ_UNITS = {"micron": 1.0, "microns": 1.0, "um": 1.0, "µm": 1.0, "\\u00B5m": 1.0, "nm": 1e-3,
             "mm": 1e3, "cm": 1e4, "m": 1e6}  # fmt: skip
_PAGE_ONLY = (MICROMANAGER,)  # tags a later page never inherits from IFD 0


def standard(tags: dict[int, Any]) -> dict[str, Any]:
    """Keys from the standard TIFF tags (and EXIF's, already merged into `tags`)."""
    out: dict[str, Any] = {}
    parts = [str(tags[t]).strip() for t in (MAKE, MODEL) if str(tags.get(t, "")).strip()]
    if parts:
        out["instrument"] = " ".join(parts)
    for tag in (DATETIME, DATETIME_ORIGINAL):  # the original, where EXIF has it, wins
        m = re.fullmatch(r"(\d{4}):(\d\d):(\d\d) (\d\d:\d\d:\d\d)", str(tags.get(tag, "")).strip())
        if m:
            out["acquired_at"] = f"{m[1]}-{m[2]}-{m[3]}T{m[4]}"
    if tags.get(EXPOSURE_TIME):
        out["exposure_s"] = round(float(tags[EXPOSURE_TIME]), 9)
    pixel = calibration(tags)
    if pixel is not None:
        out["pixel_size_um"] = pixel
    return out


def calibration(tags: dict[int, Any]) -> list[float] | None:
    """[y, x] in µm from X/YResolution, unless they are a display default or unitless."""
    unit = int(tags.get(RES_UNIT, 2))
    per = _UM_PER_UNIT.get(unit)
    x, y = tags.get(XRES), tags.get(YRES)
    if not per or not x or not y:
        return None
    dpi = [r * (2.54 if unit == 3 else 1.0) for r in (x, y)]
    if any(round(d, 1) in _DISPLAY_DPI for d in dpi):
        return None
    return [vendors.sig(per / y), vendors.sig(per / x)]


def imagej(text: str, tags: dict[int, Any], page: int) -> dict[str, Any]:
    """An ImageJ hyperstack description: planes in its order (CZT, channel fastest)."""
    kv = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    sizes = {"c": int(kv.get("channels", 1)), "z": int(kv.get("slices", 1)),
             "t": int(kv.get("frames", 1))}  # fmt: skip
    order = kv.get("order", "czt").strip().lower()
    out: dict[str, Any] = {"software": f"ImageJ {kv['ImageJ'].strip()}"} if kv.get("ImageJ") else {}
    rest = page
    for d in order if sorted(order) == ["c", "t", "z"] else "czt":
        out[d] = rest % max(1, sizes[d])
        rest //= max(1, sizes[d])
    scale = _IJ_UNITS.get(kv.get("unit", "").strip())
    if scale and tags.get(XRES) and tags.get(YRES):
        out["pixel_size_um"] = [vendors.sig(scale / tags[YRES]), vendors.sig(scale / tags[XRES])]
    if "finterval" in kv:
        out["time_s"] = round(out["t"] * float(kv["finterval"]), 6)
    if scale and "spacing" in kv:
        out["z_step_um"] = vendors.sig(float(kv["spacing"]) * scale)
        out["stage_um"] = [None, None, round(out["z"] * float(kv["spacing"]) * scale, 6)]
    return out


class MetadataReader:
    """One per worker: the compiled path pattern, and per-file extraction."""

    def __init__(self, config: MetadataConfig) -> None:
        self.config = config
        # RE2, linear time: a pattern can never stall a worker (config/pattern.py).
        self.pattern = compile_path_pattern(config.path_pattern) if config.path_pattern else None
        self._orders: tuple[tuple[int, int, int, int], micromanager.ChannelOrder] | None = None

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
        self, fd: int, size: int, name: str, pages: list[int], last: dict[str, Any]
    ) -> tuple[list[str], str | None]:
        """JSON meta of the file's pages `pages` (page numbers), each ending with the keys
        `last` (skipped-page counts, path keys); and a warning if a source was unreadable."""
        problems: list[str] = []

        def attempt(fn: Any, *args: Any) -> Any:
            try:
                return fn(*args)
            except _UNREADABLE as e:
                problems.append(f"{type(e).__name__}: {e}")
                return None

        tags0 = attempt(read_tags, fd, size) or {}
        if EXIF in tags0:
            tags0 = {**(attempt(read_tags, fd, size, tags0[EXIF][0]) or {}), **tags0}
        descs = [str(d) for d in tags0.get(DESCRIPTION, [])]
        ome = next((d for d in descs if d.lstrip()[:64].startswith(("<?xml", "<OME"))), None)
        ij = next((d for d in descs if d.startswith("ImageJ=")), None)
        mm_summary: dict[str, Any] = {}
        if MICROMANAGER in tags0:
            mm_summary = attempt(micromanager.summary, fd, size) or {}
        ifds = attempt(lambda: walk(fd, size).ifds) if pages != [0] else None
        metas = []
        for page in pages:
            tags = tags0
            if page != 0:
                own = (
                    attempt(read_tags, fd, size, ifds[page]) if ifds and page < len(ifds) else None
                )
                inherited = {k: v for k, v in tags0.items() if k not in _PAGE_ONLY}
                tags = {**inherited, **(own or {})}
            meta = self._page(fd, size, name, page, tags, (ome, ij, mm_summary, ifds), attempt)
            metas.append(json.dumps({**meta, **last}, separators=(",", ":")))
        return metas, (problems[0] if problems else None)

    def _page(
        self,
        fd: int,
        size: int,
        name: str,
        page: int,
        tags: dict[int, Any],
        layout: tuple[str | None, str | None, dict[str, Any], tuple[int, ...] | None],
        attempt: Any,
    ) -> dict[str, Any]:
        """One page's keys, the sources merged from least to most trusted."""
        ome, ij, summary, ifds = layout
        desc = str((tags.get(DESCRIPTION) or [""])[0])
        out: dict[str, Any] = attempt(standard, tags) or {}
        if ij is not None:
            out.update(attempt(imagej, ij, tags, page) or {})
        if summary:  # only Micro-Manager files have one
            out.update(attempt(micromanager.summary_keys, summary) or {})
        out.update(attempt(self._vendor, fd, size, tags, desc) or {})
        if ome is not None:
            out.update(attempt(omexml.plane, ome, page, name) or {})
            if (creator := attempt(omexml.creator, ome)) is not None:
                out["software"] = creator
        if MICROMANAGER in tags:
            order = self._channel_order(fd, size, summary, ifds)
            d = attempt(json.loads, str(tags[MICROMANAGER]))
            if isinstance(d, dict):
                c = functools.partial(order.index, page=page)
                out.update(attempt(micromanager.plane, d, c) or {})
        when = micromanager.interval_time(summary, out["t"]) if summary and "t" in out else None
        if "time_s" not in out and when is not None:
            out["time_s"] = when
        if str(tags.get(SOFTWARE, "")).strip():
            out["software"] = str(tags[SOFTWARE]).strip()
        return out

    @staticmethod
    def _vendor(fd: int, size: int, tags: dict[int, Any], desc: str) -> dict[str, Any]:
        """The vendor metadata the page has (one vendor per file in practice)."""
        out: dict[str, Any] = {}
        for tag in (FEI_SFEG, FEI_HELIOS):
            if tag in tags:
                out.update(vendors.fei(str(tags[tag])))
        if UIC1 in tags:
            out.update(vendors.metamorph(fd, size, tags[UIC1], desc))
        if LSMINFO in tags:
            out.update(vendors.lsm(fd, size, tags[LSMINFO][0]))
        if desc.startswith("Aperio"):
            out.update(vendors.aperio(desc))
        return out

    def _channel_order(
        self, fd: int, size: int, summary: dict[str, Any], ifds: tuple[int, ...] | None
    ) -> micromanager.ChannelOrder:
        """The file's channel order, kept per file version: every task of a stack needs it
        and reads only the pages past those already seen."""
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if self._orders is not None and self._orders[0] == key:
            return self._orders[1]
        offsets = ifds or (walk(fd, size).ifds)

        def text(page: int) -> str | None:
            if page >= len(offsets):
                return None
            return str(read_tags(fd, size, offsets[page]).get(MICROMANAGER) or "") or None

        names = summary.get("ChNames")
        order = micromanager.ChannelOrder(names if isinstance(names, list) else [], text)
        self._orders = (key, order)
        return order
