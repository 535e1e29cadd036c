"""Micro-Manager: each page's JSON tag (51123) and the summary in the file header.

Micro-Manager 1.4 and 2.0 (MMStack) give a page's indices as ChannelIndex, SliceIndex and
FrameIndex with its Channel name. Micro-Manager 2's NDTiff leaves those at 0 and
"Default" and puts the plane's coordinates in the page's `Axes` object instead. So, per
key: `Axes` first, for every axis (z; channel, with c its index in the acquisition's
channel order; time as t; position, row, column and any other axis under its own
name); then the 1.4 fields; then the summary (ChNames for c, z-step_um, Interval_ms for
a time where no source states one). Exposure is `Exposure-ms`, or the camera's own
`<camera>-Exposure` property where that is what the file has.

The acquisition's channel order is the summary's ChNames where it lists the channel;
otherwise the order in which the file's pages first show each channel (`ChannelOrder`).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .tifftags import MAX_TEXT, read_at

_MMSTACK, _NDTIFF, _SUMMARY = 54773648, 483729, 2355492  # header magic numbers
_AXES = re.compile(r'"Axes"\s*:\s*(\{[^{}]*\})')
_POSITIONS = ("XPositionUm", "YPositionUm", "ZPositionUm")


def summary(fd: int, size: int) -> dict[str, Any]:
    """The summary JSON in a Micro-Manager file's header; {} where there is none."""
    head = read_at(fd, size, 0, min(size, 40))
    if len(head) < 32:
        return {}
    bo = "<" if head[:2] == b"II" else ">"
    (first,) = struct.unpack_from(bo + "I", head, 8)
    if first == _NDTIFF:  # NDTiff 2: summary header at 16; NDTiff 3: minor version first
        a, b = struct.unpack_from(bo + "II", head, 16)
        if a == _SUMMARY:
            at, length = 24, b
        elif b == _SUMMARY and len(head) >= 28:
            at, length = 28, struct.unpack_from(bo + "I", head, 24)[0]
        else:
            return {}
    else:  # MMStack (1.4, 2.0): index map, display settings, comments, then the summary
        if len(head) < 40 or struct.unpack_from(bo + "I", head, 32)[0] != _SUMMARY:
            return {}
        at, length = 40, struct.unpack_from(bo + "I", head, 36)[0]
    if not 0 < length <= MAX_TEXT:
        return {}
    d = json.loads(read_at(fd, size, at, length).decode("utf-8", "replace"))
    return d if isinstance(d, dict) else {}


def interval_time(s: dict[str, Any], t: int) -> float | None:
    """Frame t's time from the summary's Interval_ms: where nothing better says it."""
    iv = _num(s.get("Interval_ms"))
    return None if iv is None else round(t * iv / 1000, 6)


def summary_keys(s: dict[str, Any]) -> dict[str, Any]:
    """What the summary says of every plane: z step, start of the acquisition, software."""
    out: dict[str, Any] = {}
    if (step := _num(s.get("z-step_um"))) is not None:
        out["z_step_um"] = step
    if (px := _num(s.get("PixelSize_um"))) is not None and px > 0:
        out["pixel_size_um"] = [px, px]
    when = _when(str(s.get("StartTime") or s.get("DateAndTime") or ""))
    if when:
        out["acquired_at"] = when
    if s.get("MicroManagerVersion"):
        out["software"] = f"Micro-Manager {s['MicroManagerVersion']}"
    return out


def plane(d: dict[str, Any], order: Callable[[str], int]) -> dict[str, Any]:
    """One page's keys from its JSON `d`, with c from the channel order."""
    out: dict[str, Any] = {}
    for key, name in (("ChannelIndex", "c"), ("SliceIndex", "z"), ("FrameIndex", "t")):
        if (v := _num(d.get(key))) is not None:
            out[name] = int(v)
    if "Channel" in d:
        out["channel"] = str(d["Channel"])
    if d.get("PositionName"):
        out["position"] = str(d["PositionName"])
    axes = d.get("Axes")
    for axis, value in axes.items() if isinstance(axes, dict) else ():
        if axis == "channel":
            out["channel"], out["c"] = str(value), order(str(value))
        elif axis in ("z", "time"):
            if (v := _num(value)) is not None:
                out["z" if axis == "z" else "t"] = int(v)
        elif isinstance(value, str | int | float):
            out[str(axis)] = value
    if (ms := _num(d.get("ElapsedTime-ms"))) is not None:
        out["time_s"] = round(ms / 1000, 6)
    camera = str(d.get("Core-Camera") or "Camera")
    for key in ("Exposure-ms", f"{camera}-Exposure", "Camera-Exposure"):
        if (ms := _num(d.get(key))) is not None:
            out["exposure_s"] = round(ms / 1000, 9)
            break
    pos = [_num(d.get(k)) for k in _POSITIONS]
    if any(p is not None for p in pos):
        out["stage_um"] = pos
    if (px := _num(d.get("PixelSizeUm"))) is not None and px > 0:
        out["pixel_size_um"] = [px, px]
    if d.get("Objective-Label"):
        out["objective"] = str(d["Objective-Label"])
    return out


def axes_channel(text: str) -> str | None:
    """The `channel` axis of a page's JSON text, found without parsing all of it."""
    m = _AXES.search(text)
    if m is None:
        return None
    v = json.loads(m[1]).get("channel")
    return None if v is None else str(v)


class ChannelOrder:
    """c of a channel: its index in the summary's ChNames, or else in the order the
    file's pages first show it (the pages up to the one asked about are read for that,
    once: later tasks of the same file continue where the last one stopped)."""

    def __init__(self, names: list[str], page_text: Callable[[int], str | None]) -> None:
        self.listed = [str(n) for n in names]
        self.page_text = page_text
        self.seen: list[str] = []
        self.scanned = 0  # pages 0..scanned-1 are in `seen`

    def index(self, name: str, page: int) -> int:
        """c of channel `name`, shown on page `page`."""
        if name in self.listed:
            return self.listed.index(name)
        while self.scanned <= page:
            text = self.page_text(self.scanned)
            seen = axes_channel(text) if text else None
            if seen is not None and seen not in self.seen:
                self.seen.append(seen)
            self.scanned += 1
        if name not in self.seen:
            self.seen.append(name)
        return self.seen.index(name)


def _num(v: Any) -> float | None:
    """A number, from JSON's numbers or Micro-Manager's numeric strings ("10.0000")."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f else None  # not NaN


def _when(text: str) -> str | None:
    """ISO 8601 of Micro-Manager's "2016-02-11 09:00:16 -0800" or "2022/12/28 17:04:23"."""
    text = text.strip()
    if not text:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).isoformat()
        except ValueError:
            continue
    return None
