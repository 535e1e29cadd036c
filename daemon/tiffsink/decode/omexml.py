"""OME-XML (an OME-TIFF's ImageDescription): the keys of one plane.

The first Image's Pixels give the plane order (DimensionOrder, sizes), channel names and
physical pixel size; its Plane elements give per-plane DeltaT, ExposureTime and stage
position. Page i of the file is plane i in DimensionOrder, the layout OME-TIFF writers
(Bio-Formats, tifffile, Micro-Manager) use for a single-file image.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

_UM = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6, "Å": 1e-4}


@dataclass
class _Image:
    order: str  # the three letters after XY, fastest first, e.g. "ZCT"
    sizes: dict[str, int]
    channels: list[str]
    pixel_size_um: list[float] | None
    acquired_at: str | None
    planes: dict[tuple[int, int, int], dict[str, Any]] = field(default_factory=dict)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _um(value: str | None, unit: str | None) -> float | None:
    if value is None:
        return None
    scale = _UM.get(unit or "µm")
    return None if scale is None else float(value) * scale


@functools.lru_cache(maxsize=4)
def _parse(text: str) -> _Image:
    root = ET.fromstring(text)
    image = next(e for e in root.iter() if _local(e.tag) == "Image")
    pixels = next(e for e in image if _local(e.tag) == "Pixels")
    a = pixels.attrib
    order = a.get("DimensionOrder", "XYZCT")[2:]
    sizes = {d: int(a.get(f"Size{d}", "1")) for d in "ZCT"}
    py_um = _um(a.get("PhysicalSizeY"), a.get("PhysicalSizeYUnit"))
    px_um = _um(a.get("PhysicalSizeX"), a.get("PhysicalSizeXUnit"))
    date = next((e.text for e in image if _local(e.tag) == "AcquisitionDate"), None)
    img = _Image(
        order,
        sizes,
        [e.attrib.get("Name", "") for e in pixels if _local(e.tag) == "Channel"],
        [round(py_um, 6), round(px_um, 6)] if py_um is not None and px_um is not None else None,
        date.strip() if date else None,
    )
    for e in pixels:
        if _local(e.tag) != "Plane":
            continue
        p = e.attrib
        key = (int(p.get("TheZ", 0)), int(p.get("TheC", 0)), int(p.get("TheT", 0)))
        keys: dict[str, Any] = {}
        if "DeltaT" in p:
            keys["time_s"] = float(p["DeltaT"]) * (1e-3 if p.get("DeltaTUnit") == "ms" else 1)
        if "ExposureTime" in p:
            ms = p.get("ExposureTimeUnit") == "ms"
            keys["exposure_s"] = float(p["ExposureTime"]) * (1e-3 if ms else 1)
        pos = [_um(p.get(f"Position{d}"), p.get(f"Position{d}Unit")) for d in "XYZ"]
        if any(v is not None for v in pos):
            keys["stage_um"] = pos
        img.planes[key] = keys
    return img


def plane(text: str, page: int) -> dict[str, Any]:
    """The keys of the plane stored as page `page`; ValueError/ET.ParseError if malformed."""
    try:
        img = _parse(text)
    except StopIteration:
        raise ValueError("OME-XML without an Image/Pixels element") from None
    idx: dict[str, int] = {}
    rest = page
    for d in img.order:
        idx[d] = rest % img.sizes[d]
        rest //= img.sizes[d]
    out: dict[str, Any] = {"z": idx["Z"], "c": idx["C"], "t": idx["T"]}
    if idx["C"] < len(img.channels) and img.channels[idx["C"]]:
        out["channel"] = img.channels[idx["C"]]
    if img.pixel_size_um:
        out["pixel_size_um"] = img.pixel_size_um
    if img.acquired_at:
        out["acquired_at"] = img.acquired_at
    out.update(img.planes.get((idx["Z"], idx["C"], idx["T"]), {}))
    return out
