"""A tiny hand-rolled classic TIFF writer, for layouts the usual writers refuse to make."""

from __future__ import annotations

import struct
from pathlib import Path

Tag = tuple[int, int, list[int]]  # tag id, TIFF type (3 SHORT, 4 LONG), values


def write_classic(path: Path, tags: list[Tag], data: bytes) -> Path:
    """One IFD at offset 8, values over 4 bytes after it, then `data` as the single strip."""
    tags = sorted([*tags, (273, 4, [0]), (279, 4, [len(data)])])
    end = 8 + 2 + 12 * len(tags) + 4
    packed = [(t, ty, v, struct.pack("<" + {3: "H", 4: "I"}[ty] * len(v), *v)) for t, ty, v in tags]
    blobs_len = sum(len(raw) for *_, raw in packed if len(raw) > 4)
    data_at = end + blobs_len
    entries, blobs = b"", b""
    for tag, typ, values, raw in packed:
        if tag == 273:
            raw = struct.pack("<I", data_at)
        if len(raw) <= 4:
            entries += struct.pack("<HHI", tag, typ, len(values)) + raw.ljust(4, b"\0")
        else:
            entries += struct.pack("<HHII", tag, typ, len(values), end + len(blobs))
            blobs += raw
    head = b"II*\0" + struct.pack("<IH", 8, len(tags))
    path.write_bytes(head + entries + b"\0\0\0\0" + blobs + data)
    return path
