"""OME-XML (an OME-TIFF's ImageDescription): the keys of the plane a page holds.

Which plane a page holds comes from the Image's TiffData elements for this file (IFD,
FirstZ/C/T, PlaneCount, counted in DimensionOrder), as Bio-Formats and Micro-Manager
write them; TiffData naming another file (a multi-file acquisition) is not this file's.
Without TiffData for this file, the Images' planes follow one another from page 0 in
DimensionOrder, the layout of a single-file OME-TIFF. Per image: channel names, physical
pixel size and z step, the acquisition date, and the instrument it references
(Microscope; Objective, through ObjectiveSettings or the only one); per Plane: DeltaT,
ExposureTime and stage position.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

_UM = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4}
_S = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "min": 60.0, "h": 3600.0}


@dataclass
class _Image:
    order: str  # the three letters after XY, fastest first, e.g. "ZCT"
    sizes: dict[str, int]
    channels: list[str]
    keys: dict[str, Any]  # for every plane: pixel size, z step, date, instrument, objective
    planes: dict[tuple[int, int, int], dict[str, Any]] = field(default_factory=dict)

    def unravel(self, n: int) -> tuple[int, int, int]:
        """(z, c, t) of the image's n-th plane in DimensionOrder."""
        idx: dict[str, int] = {}
        for d in self.order:
            idx[d] = n % self.sizes[d]
            n //= self.sizes[d]
        return idx["Z"], idx["C"], idx["T"]

    def ravel(self, z: int, c: int, t: int) -> int:
        """The plane number of (z, c, t) in DimensionOrder."""
        at, n, stride = {"Z": z, "C": c, "T": t}, 0, 1
        for d in self.order:
            n += at[d] * stride
            stride *= self.sizes[d]
        return n

    @property
    def count(self) -> int:
        return self.sizes["Z"] * self.sizes["C"] * self.sizes["T"]


@dataclass
class _Doc:
    images: list[_Image]
    tiffdata: list[tuple[int, int, int, int, str | None]]  # image, ifd, first, count, file
    creator: str | None  # the writing software

    def images_in(self, name: str) -> set[int]:
        """The images with planes in the file `name` (all, without TiffData for it)."""
        here = {td[0] for td in self.tiffdata if td[4] is None or td[4] == name}
        return here or set(range(len(self.images)))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _kids(e: ET.Element, name: str) -> list[ET.Element]:
    return [k for k in e if _local(k.tag) == name]


def _um(value: str | None, unit: str | None) -> float | None:
    if value is None:
        return None
    scale = _UM.get(unit or "µm")
    return None if scale is None else float(f"{float(value) * scale:.6g}")


def _seconds(value: str, unit: str | None) -> float:
    return round(float(value) * _S.get(unit or "s", 1.0), 6)


def _device(e: ET.Element | None) -> str | None:
    """ "Manufacturer Model" of an instrument element, where it names either."""
    if e is None:
        return None
    name = " ".join(e.attrib[k].strip() for k in ("Manufacturer", "Model") if e.get(k, "").strip())
    return name or None


def _objective(e: ET.Element | None) -> str | None:
    if e is None:
        return None
    parts = [_device(e) or ""]
    if e.get("NominalMagnification"):
        parts.append(f"{float(e.attrib['NominalMagnification']):g}x")
    if e.get("LensNA"):
        parts.append(f"NA {float(e.attrib['LensNA']):g}")
    return " ".join(p for p in parts if p) or None


def _instruments(root: ET.Element) -> dict[str, tuple[str | None, dict[str, ET.Element]]]:
    out: dict[str, tuple[str | None, dict[str, ET.Element]]] = {}
    for inst in _kids(root, "Instrument"):
        scope = next(iter(_kids(inst, "Microscope")), None)
        objectives = {o.get("ID", ""): o for o in _kids(inst, "Objective")}
        out[inst.get("ID", "")] = (_device(scope), objectives)
    return out


def _image(image: ET.Element, instruments: dict[str, Any]) -> _Image:
    pixels = next(e for e in image if _local(e.tag) == "Pixels")
    a = pixels.attrib
    keys: dict[str, Any] = {}
    py = _um(a.get("PhysicalSizeY"), a.get("PhysicalSizeYUnit"))
    px = _um(a.get("PhysicalSizeX"), a.get("PhysicalSizeXUnit"))
    if py is not None and px is not None:
        keys["pixel_size_um"] = [py, px]
    pz = _um(a.get("PhysicalSizeZ"), a.get("PhysicalSizeZUnit"))
    if pz is not None:
        keys["z_step_um"] = pz
    date = next((e.text for e in _kids(image, "AcquisitionDate") if e.text), None)
    if date:
        keys["acquired_at"] = date.strip()
    ref = next(iter(_kids(image, "InstrumentRef")), None)
    scope, objectives = instruments.get(ref.get("ID", "") if ref is not None else "", (None, {}))
    if scope:
        keys["instrument"] = scope
    settings = next(iter(_kids(image, "ObjectiveSettings")), None)
    chosen = objectives.get(settings.get("ID", "")) if settings is not None else None
    objective = _objective(
        chosen or (next(iter(objectives.values())) if len(objectives) == 1 else None)
    )
    if objective:
        keys["objective"] = objective
    img = _Image(
        a.get("DimensionOrder", "XYZCT")[2:],
        {d: max(1, int(a.get(f"Size{d}", "1"))) for d in "ZCT"},
        [e.attrib.get("Name", "") for e in _kids(pixels, "Channel")],
        keys,
    )
    for e in _kids(pixels, "Plane"):
        p = e.attrib
        plane: dict[str, Any] = {}
        if "DeltaT" in p:
            plane["time_s"] = _seconds(p["DeltaT"], p.get("DeltaTUnit"))
        if "ExposureTime" in p:
            plane["exposure_s"] = _seconds(p["ExposureTime"], p.get("ExposureTimeUnit"))
        pos = [_um(p.get(f"Position{d}"), p.get(f"Position{d}Unit")) for d in "XYZ"]
        if any(v is not None for v in pos):
            plane["stage_um"] = pos
        img.planes[(int(p.get("TheZ", 0)), int(p.get("TheC", 0)), int(p.get("TheT", 0)))] = plane
    return img


@functools.lru_cache(maxsize=4)
def _parse(text: str) -> _Doc:
    root = ET.fromstring(text)
    instruments = _instruments(root)
    images = [_image(e, instruments) for e in _kids(root, "Image")]
    tiffdata = []
    for i, image in enumerate(_kids(root, "Image")):
        pixels = next(e for e in image if _local(e.tag) == "Pixels")
        for td in _kids(pixels, "TiffData"):
            uuid = next(iter(_kids(td, "UUID")), None)
            file = uuid.get("FileName") if uuid is not None else None
            ifd = td.get("IFD")
            count = td.get("PlaneCount")
            n = int(count) if count is not None else (1 if ifd is not None else images[i].count)
            z, c, t = (int(td.get(f"First{d}", 0)) for d in "ZCT")
            tiffdata.append((i, int(ifd or 0), images[i].ravel(z, c, t), n, file))
    return _Doc(images, tiffdata, root.get("Creator") or None)


def _locate(doc: _Doc, name: str, page: int) -> tuple[int, int]:
    """(image, plane number in it) that page `page` of the file `name` holds."""
    ours = [td for td in doc.tiffdata if td[4] is None or td[4] == name]
    for image, ifd, first, n, _ in ours:
        if ifd <= page < ifd + n:
            return image, first + page - ifd
    if ours:
        raise ValueError(f"OME-XML maps no plane to page {page}")
    rest = page
    for i, img in enumerate(doc.images):
        if rest < img.count:
            return i, rest
        rest -= img.count
    raise ValueError(f"OME-XML has {page - rest} planes, not page {page}")


def plane(text: str, page: int, name: str = "") -> dict[str, Any]:
    """The keys of the plane stored as page `page` of the file called `name`;
    ValueError/ET.ParseError if malformed."""
    try:
        doc = _parse(text)
    except StopIteration:
        raise ValueError("OME-XML Image without a Pixels element") from None
    if not doc.images:
        raise ValueError("OME-XML without an Image element")
    i, n = _locate(doc, name, page)
    img = doc.images[i]
    z, c, t = img.unravel(n)
    out: dict[str, Any] = {"z": z, "c": c, "t": t}
    if len(doc.images_in(name)) > 1:  # a multi-series file: which image the row is from
        out["series"] = i
    if c < len(img.channels) and img.channels[c]:
        out["channel"] = img.channels[c]
    out.update(img.keys)
    out.update(img.planes.get((z, c, t), {}))
    return out


def creator(text: str) -> str | None:
    """The OME root's Creator (the writing software), if it names one."""
    return _parse(text).creator
