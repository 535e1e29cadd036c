"""The IFD 0 parser: the fields that pick a decode route, and clear reasons for bad headers."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tiffsink.decode.tiffheader import HeaderError, Ifd, read_first_ifd

Tag = tuple[int, int, tuple[int, ...]]  # tag id, TIFF type, values


def classic(tags: list[Tag], bo: str = "<", ifd_at: int = 8, extra: bytes = b"") -> bytes:
    """A classic TIFF with one IFD; values over 4 bytes go after the IFD."""
    n = len(tags)
    head = (b"II*\0" if bo == "<" else b"MM\0*") + struct.pack(bo + "I", ifd_at)
    head = head.ljust(ifd_at, b"\0")
    table_end = ifd_at + 2 + 12 * n + 4
    entries, blobs = b"", b""
    for tag, typ, values in tags:
        code = {3: "H", 4: "I", 5: "II"}[typ]
        raw = struct.pack(bo + code * len(values), *values) if typ != 5 else b"\0" * 8
        if len(raw) <= 4:
            entries += struct.pack(bo + "HHI", tag, typ, len(values)) + raw.ljust(4, b"\0")
        else:
            at = table_end + len(blobs)
            entries += struct.pack(bo + "HHII", tag, typ, len(values), at)
            blobs += raw
    return head + struct.pack(bo + "H", n) + entries + struct.pack(bo + "I", 0) + blobs + extra


def parse(data: bytes, tmp_path: Path) -> Ifd:
    p = tmp_path / "h.tif"
    p.write_bytes(data)
    fd = os.open(p, os.O_RDONLY)
    try:
        return read_first_ifd(fd, len(data))
    finally:
        os.close(fd)


def reason(data: bytes, tmp_path: Path) -> str:
    with pytest.raises(HeaderError) as e:
        parse(data, tmp_path)
    return e.value.reason


GRAY = [(256, 3, (64,)), (257, 3, (32,)), (258, 3, (16,)), (273, 4, (200,)), (279, 4, (4096,))]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"byteorder": ">"},
        {"bigtiff": True},
        {"compression": "zlib"},
        {"tile": (16, 16)},
        {"photometric": "rgb"},
    ],
    ids=["plain", "big-endian", "bigtiff", "deflate", "tiled", "rgb"],
)
def test_agrees_with_tifffile(tmp_path: Path, kwargs: dict[str, object]) -> None:
    """Geometry, samples, compression, strips/tiles and layout match tifffile's reading."""
    shape = (48, 40, 3) if kwargs.get("photometric") == "rgb" else (48, 40)
    arr = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kwargs)  # type: ignore[arg-type]
    ifd = parse(buf.getvalue(), tmp_path)
    page = tifffile.TiffFile(io.BytesIO(buf.getvalue())).pages[0]
    assert (ifd.width, ifd.height, ifd.spp) == (
        page.imagewidth,
        page.imagelength,
        page.samplesperpixel,
    )
    assert ifd.compression == page.compression and ifd.photometric == page.photometric
    assert ifd.bits[0] == page.bitspersample and ifd.tiled == page.is_tiled
    assert ifd.offsets == tuple(page.dataoffsets) and ifd.counts == tuple(page.databytecounts)
    assert ifd.bigtiff == bool(kwargs.get("bigtiff"))
    assert ifd.byteorder == kwargs.get("byteorder", "<")


def test_defaults_fill_missing_optional_tags(tmp_path: Path) -> None:
    """No SamplesPerPixel, Compression or Photometric tag: TIFF's defaults are used."""
    ifd = parse(classic(GRAY), tmp_path)
    assert (ifd.spp, ifd.compression, ifd.planar, ifd.depth, ifd.sample_format) == (1, 1, 1, 1, 1)
    assert ifd.data_end == 200 + 4096 and ifd.next_ifd == 0


def test_values_stored_after_the_table_are_read(tmp_path: Path) -> None:
    """Strip offsets too long for the entry are fetched from where the entry points."""
    tags = [*GRAY[:3], (273, 4, (300, 400, 500)), (279, 4, (100, 100, 100))]
    ifd = parse(classic(tags), tmp_path)
    assert ifd.offsets == (300, 400, 500) and ifd.counts == (100, 100, 100)


def test_bad_magic_is_not_tiff(tmp_path: Path) -> None:
    """A PNG (or anything else) is reported as not_tiff."""
    assert reason(b"\x89PNG\r\n\x1a\n" + b"\0" * 32, tmp_path) == "not_tiff"


def test_a_cut_header_is_truncated(tmp_path: Path) -> None:
    """Three bytes of a TIFF magic are a truncated file, not a foreign one."""
    assert reason(b"II*", tmp_path) == "truncated"


def test_ifd_past_the_end_is_truncated(tmp_path: Path) -> None:
    """An IFD offset beyond the file is truncation, found without reading past the end."""
    assert reason(b"II*\0" + struct.pack("<I", 10_000) + b"\0" * 8, tmp_path) == "truncated"


def test_ifd_inside_the_header_is_corrupt(tmp_path: Path) -> None:
    """An IFD offset below 8 points into the header itself."""
    assert reason(b"II*\0" + struct.pack("<I", 4) + b"\0" * 16, tmp_path) == "corrupt"


def test_empty_ifd_is_corrupt(tmp_path: Path) -> None:
    """An IFD with no entries describes no image."""
    assert reason(b"II*\0" + struct.pack("<IHI", 8, 0, 0), tmp_path) == "corrupt"


def test_missing_width_is_corrupt(tmp_path: Path) -> None:
    """ImageWidth is required; its absence is named."""
    with pytest.raises(HeaderError, match="required tag 256 missing"):
        parse(classic(GRAY[1:]), tmp_path)


def test_mismatched_strip_counts_are_corrupt(tmp_path: Path) -> None:
    """Two strip offsets but one byte count: the strips cannot be trusted."""
    tags = [*GRAY[:3], (273, 4, (300, 400)), (279, 4, (100,))]
    assert reason(classic(tags), tmp_path) == "corrupt"


def test_non_integer_type_on_a_wanted_tag_is_corrupt(tmp_path: Path) -> None:
    """Width as a RATIONAL is not a width."""
    tags = [(256, 5, (1, 1)), *GRAY[1:]]
    assert reason(classic(tags), tmp_path) == "corrupt"


def test_a_count_larger_than_the_file_is_refused_before_reading(tmp_path: Path) -> None:
    """A hostile count (4 billion strip offsets) fails at once instead of allocating."""
    data = bytearray(classic(GRAY))
    # Patch the StripOffsets entry's count (4th entry: header 8 + count 2 + 3 * 12, then +4).
    struct.pack_into("<I", data, 8 + 2 + 3 * 12 + 4, 0xFFFFFFFF)
    assert reason(bytes(data), tmp_path) == "corrupt"
