"""Instrument vendors' own metadata: the calibration, date and instrument they state.

- FEI / Thermo Fisher SEMs (tags 34680, 34682, INI text): [Scan] PixelWidth/PixelHeight
  in metres, [User] Date and Time, [System] SystemType (or Type), [Stage] StageX/Y/Z;
- MetaMorph / STK (UIC1 tag 33628): XCalibration/YCalibration with CalibrationUnits when
  SpatialCalibration is on; the plane properties _IllumSetting_ (the channel) and
  _MagSetting_ (the objective); "Exposure: 300 ms" in the description;
- Aperio SVS (the description "Aperio ...|key = value|..."): MPP (scaled for a
  downsampled page, "46000x32914 -> 1024x732"), ScanScope ID, AppMag, Date and Time;
- Zeiss LSM (CZ_LSMINFO tag 34412): VoxelSizeX/Y/Z in metres.
Each parser returns only what the file states; none guesses.
"""

from __future__ import annotations

import re
import struct
from datetime import datetime
from typing import Any

from .tifftags import read_at

_UNITS_UM = {"um": 1.0, "µm": 1.0, "micron": 1.0, "microns": 1.0, "nm": 1e-3, "mm": 1e3,
             "cm": 1e4, "m": 1e6}  # fmt: skip
_LSM_MAGIC = (50350412, 67127628)
_MM_EXPOSURE = re.compile(r"^Exposure:\s*([0-9.]+)\s*(ms|s)\b", re.MULTILINE)
_APERIO_SCALE = re.compile(r"(\d+)x(\d+)\s*->\s*(\d+)x(\d+)")
_UIC_MAX = 4096


def sig(v: float) -> float:
    """Six significant digits: a calibration's precision, whatever its scale."""
    return float(f"{v:.6g}")


def fei(text: str) -> dict[str, Any]:
    """An FEI header (INI sections) -> pixel size, date, instrument, stage."""
    sections: dict[str, dict[str, str]] = {}
    current = sections.setdefault("", {})
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif "=" in line:
            k, v = line.split("=", 1)
            current[k.strip()] = v.strip()
    out: dict[str, Any] = {}
    scan = sections.get("Scan", {})
    if scan.get("PixelWidth") and scan.get("PixelHeight"):
        w, h = float(scan["PixelWidth"]) * 1e6, float(scan["PixelHeight"]) * 1e6
        if w > 0 and h > 0:
            out["pixel_size_um"] = [sig(h), sig(w)]
    user = sections.get("User", {})
    when = _parse_time(f"{user.get('Date', '')} {user.get('Time', '')}",
                       ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S"))  # fmt: skip
    if when:
        out["acquired_at"] = when
    system = sections.get("System", {})
    name = system.get("SystemType") or system.get("Type")
    if name:
        out["instrument"] = f"FEI {name}"
    stage = sections.get("Stage", {})
    pos = [stage.get(k) for k in ("StageX", "StageY", "StageZ")]
    if any(pos):
        out["stage_um"] = [sig(float(p) * 1e6) if p else None for p in pos]
    return out


def aperio(desc: str) -> dict[str, Any]:
    """An Aperio SVS page description -> pixel size, scanner, objective, date, software."""
    head, _, rest = desc.partition("|")
    fields: dict[str, str] = {}
    for part in rest.split("|"):
        if "=" in part:
            k, v = part.split("=", 1)
            fields.setdefault(k.strip(), v.strip())
    out: dict[str, Any] = {"software": head.splitlines()[0].strip()}
    if fields.get("MPP"):
        mpp = float(fields["MPP"])
        m = _APERIO_SCALE.search(head.split(";")[0])
        if m and int(m[3]) > 0:  # a downsampled page: its pixels are larger
            mpp *= int(m[1]) / int(m[3])
        out["pixel_size_um"] = [sig(mpp), sig(mpp)]
    if fields.get("ScanScope ID"):
        out["instrument"] = f"Aperio ScanScope {fields['ScanScope ID']}"
    if fields.get("AppMag"):
        out["objective"] = f"{float(fields['AppMag']):g}x"
    when = _parse_time(f"{fields.get('Date', '')} {fields.get('Time', '')}",
                       ("%m/%d/%y %H:%M:%S", "%m/%d/%Y %H:%M:%S"))  # fmt: skip
    if when:
        out["acquired_at"] = when
    return out


def metamorph(fd: int, size: int, uic1: tuple[int, int], desc: str) -> dict[str, Any]:
    """MetaMorph's UIC1 tag (id/value pairs at `uic1`'s offset) and description."""
    out: dict[str, Any] = {}
    m = _MM_EXPOSURE.search(desc)
    if m:
        out["exposure_s"] = round(float(m[1]) * (1e-3 if m[2] == "ms" else 1.0), 9)
    offset, count = uic1
    raw = read_at(fd, size, offset, 8 * min(count, _UIC_MAX))
    pairs = dict(struct.iter_unpack("<II", raw))
    units = _uic_text(fd, size, pairs.get(6))
    scale = _UNITS_UM.get(units.strip().lower()) if units else None
    if pairs.get(3) and scale is not None and 4 in pairs and 5 in pairs:
        x, y = _uic_rational(fd, size, pairs[4]), _uic_rational(fd, size, pairs[5])
        if x > 0 and y > 0:
            out["pixel_size_um"] = [sig(y * scale), sig(x * scale)]
    for tagid, value in struct.iter_unpack("<II", raw):
        if tagid != 49:  # PlaneProperty: a named value at value + 4
            continue
        name, prop = _uic_property(fd, size, value + 4)
        if name == "_IllumSetting_" and isinstance(prop, str) and prop:
            out["channel"] = prop
        elif name == "_MagSetting_" and isinstance(prop, str) and prop:
            out["objective"] = prop
    return out


def lsm(fd: int, size: int, offset: int) -> dict[str, Any]:
    """Zeiss LSM's CZ_LSMINFO: VoxelSizeX/Y (the pixel) and VoxelSizeZ, in metres."""
    raw = read_at(fd, size, offset, 64)
    if struct.unpack_from("<I", raw)[0] not in _LSM_MAGIC:
        return {}
    vx, vy, vz = struct.unpack_from("<3d", raw, 40)
    out: dict[str, Any] = {}
    if vx > 0 and vy > 0:
        out["pixel_size_um"] = [sig(vy * 1e6), sig(vx * 1e6)]
    if vz > 0:
        out["z_step_um"] = sig(vz * 1e6)
    return out


def _uic_rational(fd: int, size: int, offset: int) -> float:
    num, den = struct.unpack("<II", read_at(fd, size, offset, 8))
    return num / den if den else 0.0


def _uic_text(fd: int, size: int, offset: int | None) -> str | None:
    """A UIC Pascal string: its length, then that many bytes, the last one dropped, up to
    a NUL (MetaMorph pads "um" as b"um\\0e\\0")."""
    if not offset or offset < 8:
        return None
    (n,) = struct.unpack("<I", read_at(fd, size, offset, 4))
    if not 0 < n < 1024:
        return None
    return read_at(fd, size, offset + 4, n)[:-1].split(b"\0")[0].decode("latin-1")


def _uic_property(fd: int, size: int, offset: int) -> tuple[str, str | float]:
    """A UIC plane property: (name, value), the value text or a rational."""
    (n,) = struct.unpack("B", read_at(fd, size, offset, 1))
    name = read_at(fd, size, offset + 1, n).decode("latin-1")
    _flags, kind = struct.unpack("<IB", read_at(fd, size, offset + 1 + n, 5))
    at = offset + 6 + n
    if kind == 1:
        num, den = struct.unpack("<II", read_at(fd, size, at, 8))
        return name, num / den if den else 0.0
    (m,) = struct.unpack("B", read_at(fd, size, at, 1))
    return name, read_at(fd, size, at + 1, m).split(b"\0")[0].decode("latin-1")


def _parse_time(text: str, formats: tuple[str, ...]) -> str | None:
    text = text.strip()
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt).isoformat()
        except ValueError:
            continue
    return None
