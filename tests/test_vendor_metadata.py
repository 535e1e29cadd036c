"""Row metadata from generated files of each kind: Micro-Manager 2 (NDTiff) axes,
OME-XML beside Micro-Manager tags, resolution tags that are or are not a calibration,
and the vendors' own calibrations (FEI, Aperio, Zeiss LSM)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from tiffsink.config import ImageSpec, MetadataConfig
from tiffsink.decode import Decoder
from tiffsink.decode.metadata import MetadataReader
from tiffsink.decode.readfile import FileRead, read_pages

SPEC = ImageSpec(height=8, width=10, dtype="uint16", pages="all")


def metas(p: Path, chunk: int = 8) -> list[dict[str, Any]]:
    """Every row's meta, decoded `chunk` pages per call as a worker does."""
    dec, reader, out = Decoder(SPEC), MetadataReader(MetadataConfig()), []
    while True:
        outs = [np.empty((8, 10), np.uint16) for _ in range(chunk)]
        got = read_pages(dec, reader, str(p), None, len(out), outs, None, FileRead())
        assert got.result is not None and got.meta_warning is None, got.meta_warning
        out += [json.loads(i.meta) for i in got.result.pages]
        if len(out) >= got.result.pages_total:
            return out


def mm_pages(p: Path, pages: list[dict[str, Any]], description: str | None = None) -> None:
    with tifffile.TiffWriter(p) as tw:
        for i, d in enumerate(pages):
            tw.write(
                np.full((8, 10), i, np.uint16),
                extratags=[(51123, "s", 0, json.dumps(d), True)],
                description=description if i == 0 else None,
                metadata=None,
                software=False,
            )


@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_ndtiff_axes_name_every_plane(tmp_path: Path, chunk: int) -> None:
    """`Axes` wins over NDTiff's zeroed 1.4 fields; c follows the channels' first showing."""
    pages = [
        {"ChannelIndex": 0, "SliceIndex": 0, "FrameIndex": 0, "Channel": "Default",
         "Core-Camera": "Cam", "Cam-Exposure": "12.5000",
         "Axes": {"channel": ch, "time": t, "z": z, "position": "A1", "row": 2, "column": 3,
                  "view": 1}}
        for t in range(2) for z in range(2) for ch in ("GFP", "DAPI")
    ]  # fmt: skip
    mm_pages(tmp_path / "nd.tif", pages)
    got = metas(tmp_path / "nd.tif", chunk)
    assert [(m["channel"], m["c"], m["z"], m["t"]) for m in got] == [
        (ch, c, z, t) for t in range(2) for z in range(2) for c, ch in enumerate(("GFP", "DAPI"))
    ]
    assert all((m["position"], m["row"], m["column"], m["view"]) == ("A1", 2, 3, 1) for m in got)
    assert all(m["exposure_s"] == pytest.approx(0.0125) for m in got)


def test_micro_manager_1_4_indices_still_work(tmp_path: Path) -> None:
    """Without `Axes`: ChannelIndex, SliceIndex, FrameIndex and Exposure-ms."""
    pages = [{"ChannelIndex": c, "SliceIndex": 1, "FrameIndex": 4, "Channel": f"ch{c}",
              "Exposure-ms": 30} for c in range(2)]  # fmt: skip
    mm_pages(tmp_path / "mm.tif", pages)
    got = metas(tmp_path / "mm.tif")
    assert [(m["c"], m["z"], m["t"], m["channel"]) for m in got] == [
        (0, 1, 4, "ch0"),
        (1, 1, 4, "ch1"),
    ]
    assert got[0]["exposure_s"] == pytest.approx(0.03)


OME = """<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" Creator="Acq 2.0">
<Instrument ID="Instrument:0"><Microscope Manufacturer="Zeiss" Model="Axio Observer"/>
<Objective ID="Objective:0" Manufacturer="Zeiss" Model="Plan-Apochromat" NominalMagnification="63" LensNA="1.4"/></Instrument>
<Image ID="Image:0"><AcquisitionDate>2021-05-06T07:08:09</AcquisitionDate><InstrumentRef ID="Instrument:0"/>
<Pixels DimensionOrder="XYCZT" ID="Pixels:0" SizeC="2" SizeT="1" SizeX="10" SizeY="8" SizeZ="1" Type="uint16"
 PhysicalSizeX="0.1" PhysicalSizeY="0.1"><Channel ID="Channel:0:0" Name="A"/><Channel ID="Channel:0:1" Name="B"/>
<TiffData FirstC="1" IFD="0" PlaneCount="1"/><TiffData FirstC="0" IFD="1" PlaneCount="1"/></Pixels></Image></OME>"""  # noqa: E501


def test_ome_xml_fills_what_micro_manager_tags_lack(tmp_path: Path) -> None:
    """Date, microscope and objective from OME-XML; the plane's indices from the MM tag."""
    pages = [{"ChannelIndex": 1, "Channel": "B"}, {"ChannelIndex": 0, "Channel": "A"}]
    mm_pages(tmp_path / "mm.ome.tif", pages, description=OME)
    got = metas(tmp_path / "mm.ome.tif")
    assert [(m["c"], m["channel"]) for m in got] == [(1, "B"), (0, "A")]
    for m in got:
        assert m["acquired_at"] == "2021-05-06T07:08:09"
        assert m["instrument"] == "Zeiss Axio Observer"
        assert m["objective"] == "Zeiss Plan-Apochromat 63x NA 1.4"
        assert m["pixel_size_um"] == [0.1, 0.1] and m["software"] == "Acq 2.0"


def test_ome_tiffdata_maps_pages_to_planes(tmp_path: Path) -> None:
    """TiffData IFD/FirstC place page 0 at c = 1 and page 1 at c = 0, against the order."""
    with tifffile.TiffWriter(tmp_path / "o.ome.tif") as tw:
        tw.write(np.zeros((8, 10), np.uint16), description=OME, metadata=None)
        tw.write(np.zeros((8, 10), np.uint16), metadata=None)
    assert [(m["c"], m["channel"]) for m in metas(tmp_path / "o.ome.tif")] == [(1, "B"), (0, "A")]


@pytest.mark.parametrize(
    ("res", "unit", "want"),
    [
        ((72, 72), "INCH", None),  # a display default
        ((96, 96), "INCH", None),
        ((96 / 2.54, 96 / 2.54), "CENTIMETER", None),  # 96 dpi in centimetres
        ((1200, 1200), "INCH", [21.1667, 21.1667]),  # a scanner's calibration
        ((2000, 4000), "CENTIMETER", [2.5, 5.0]),  # 5 µm x, 2.5 µm y
        ((72, 72), "NONE", None),  # no unit: not a size
    ],
)
def test_resolution_tags_count_only_as_a_calibration(
    tmp_path: Path, res: tuple[float, float], unit: str, want: list[float] | None
) -> None:
    """72 and 96 dpi give no pixel size; other resolutions in inch or cm do."""
    tifffile.imwrite(tmp_path / "r.tif", np.zeros((8, 10), np.uint16), resolution=res,
                     resolutionunit=unit, metadata=None)  # fmt: skip
    (m,) = metas(tmp_path / "r.tif")
    assert m.get("pixel_size_um") == want


FEI = "\r\n".join(
    [
        "[User]",
        "Date=01/02/2020",
        "Time=03:04:05 PM",
        "[System]",
        "Type=SEM",
        "SystemType=Helios",
        "[Scan]",
        "PixelWidth=2.5e-009",
        "PixelHeight=3e-009",
    ]
)


def test_fei_pixel_width_is_the_calibration(tmp_path: Path) -> None:
    """FEI's [Scan] PixelWidth (metres) beats the 96 dpi beside it; date and instrument."""
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((8, 10), np.uint8), resolution=(96, 96),
                     resolutionunit="INCH", extratags=[(34682, "s", 0, FEI, True)],
                     metadata=None)  # fmt: skip
    (m,) = metas(tmp_path / "f.tif")
    assert m["pixel_size_um"] == [0.003, 0.0025]
    assert (m["acquired_at"], m["instrument"]) == ("2020-01-02T15:04:05", "FEI Helios")


def test_aperio_mpp_scales_with_a_downsampled_page(tmp_path: Path) -> None:
    """MPP for the baseline; a "4000x2000 -> 1000x500" page has pixels 4 times larger."""
    tail = "|AppMag = 40|MPP = 0.25|ScanScope ID = SS1234|Date = 03/04/21|Time = 05:06:07"
    with tifffile.TiffWriter(tmp_path / "a.svs") as tw:
        for line in ("4000x2000 [0,0 4000x2000] (240x240)", "4000x2000 -> 1000x500 - "):
            desc = f"Aperio Image Library v1\r\n{line}{tail}"
            tw.write(np.zeros((8, 10), np.uint8), metadata=None, description=desc, software=False)
    base, thumb = metas(tmp_path / "a.svs")
    assert (base["pixel_size_um"], thumb["pixel_size_um"]) == ([0.25, 0.25], [1.0, 1.0])
    assert base["instrument"] == "Aperio ScanScope SS1234" and base["objective"] == "40x"
    assert base["acquired_at"] == "2021-03-04T05:06:07"
    assert base["software"] == "Aperio Image Library v1"


def test_lsm_voxel_size_is_the_calibration(tmp_path: Path) -> None:
    """CZ_LSMINFO VoxelSizeX/Y/Z (metres) give the pixel size and the z step."""
    info = struct.pack("<IiiiiiiiII3d", 67127628, 500, 10, 8, 1, 1, 1, 0, 0, 0,
                       0.2e-6, 0.3e-6, 1.5e-6).ljust(500, b"\0")  # fmt: skip
    tifffile.imwrite(tmp_path / "z.lsm.tif", np.zeros((8, 10), np.uint16), metadata=None,
                     extratags=[(34412, 1, len(info), info, True)])  # fmt: skip
    (m,) = metas(tmp_path / "z.lsm.tif")
    assert (m["pixel_size_um"], m["z_step_um"]) == ([0.3, 0.2], 1.5)
