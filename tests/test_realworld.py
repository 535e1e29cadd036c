"""Real instrument files (../shared/realworld, see its README and MANIFEST.tsv): each
ingests as its own metadata declares, page for page and key for key.

What each file declares is read here independently, with tifffile's parsed metadata
(`micromanager_metadata`, `imagej_metadata`, `ome_metadata`, `fei_metadata`,
`stk_metadata`, page tags), never from tiffsink's output. Where a value is written down,
a comment says where in the file's metadata it comes from. The files stay in ../shared:
nothing here copies them.
"""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from tiffsink import open_dataset

from conftest import ROOT, run_cli, small_sections, write_config

REAL = ROOT.parent / "shared" / "realworld"
if not (REAL / "MANIFEST.tsv").is_file():
    pytest.skip(
        f"{REAL} is absent: the real instrument files are not here", allow_module_level=True
    )

FILES = [ln.split("\t")[0] for ln in (REAL / "MANIFEST.tsv").read_text().splitlines()[1:] if ln]
Rows = dict[str, list[tuple[int, dict[str, Any]]]]  # file -> [(page, meta)] in page order
NDTIFF_MDA = "ndtiff/12_bit_pycromanager_mda_NDTiffStack.tif"


def ingest(tmp: Path, workers: int = 2, slots: int = 4) -> Path:
    """`tiffsink ingest` of the whole folder, every page, .svs included."""
    tmp.mkdir(parents=True, exist_ok=True)
    over: dict[str, Any] = {
        "image": {"pages": "all"},
        "watch": {"patterns": ["*.tif", "*.tiff", "*.svs"]},
        "workers": {"count": workers, "slots_per_worker": slots},
    }
    conf = write_config(tmp / "cfg.toml", small_sections(tmp, **over))
    r = run_cli("ingest", str(REAL), "--config", str(conf), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return tmp / "dataset"


def rows_of(dataset: Path) -> Rows:
    out: Rows = {}
    with open_dataset(dataset) as ds:
        for i in range(len(ds)):
            rec = ds.record(i)
            name = str(Path(rec.source).relative_to(REAL))
            out.setdefault(name, []).append((rec.page, ds.meta(i)))
    return {k: sorted(v, key=lambda pm: pm[0]) for k, v in out.items()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ingest(tmp_path_factory.mktemp("real"))


@pytest.fixture(scope="module")
def rows(dataset: Path) -> Rows:
    return rows_of(dataset)


@pytest.fixture
def tif(request: pytest.FixtureRequest) -> Iterator[tifffile.TiffFile]:
    with tifffile.TiffFile(REAL / request.param) as t:
        yield t


def plane_pages(t: tifffile.TiffFile) -> list[int]:
    """Pages whose NewSubfileType is neither reduced (1) nor mask (4); else page 0."""
    return [i for i, p in enumerate(t.pages) if not int(p.subfiletype) & 5] or [0]


def um_per_unit(page: Any) -> float:
    """µm per ResolutionUnit: inch or centimetre."""
    return {2: 25400.0, 3: 10000.0}[int(page.tags["ResolutionUnit"].value)]


def test_every_file_is_tested_and_none_fails(dataset: Path, rows: Rows) -> None:
    """Every file of the folder has rows and a test below; no file is a failure."""
    with open_dataset(dataset) as ds:
        assert ds.failures() == []
    assert sorted(rows) == sorted(FILES)
    assert sorted(FILES) == sorted(EXPECT)


def test_each_file_gives_its_plane_pages_as_rows(rows: Rows) -> None:
    """Rows are the pages whose NewSubfileType marks neither overview nor mask."""
    for name in FILES:
        with tifffile.TiffFile(REAL / name) as t:
            assert [p for p, _ in rows[name]] == plane_pages(t), name


def _geotiff_masks(m: list[tuple[int, dict[str, Any]]], t: tifffile.TiffFile) -> None:
    # goes.tif: page 1 NewSubfileType 4 (mask), 2 is 1 (overview), 3 is 5 (overview's mask)
    kinds = [int(p.subfiletype) for p in t.pages]
    assert kinds == [0, 4, 1, 5]
    ((_, meta),) = m
    assert (meta["overview_pages"], meta["mask_pages"]) == (1, 2)


def _imagej(m: list[tuple[int, dict[str, Any]]], t: tifffile.TiffFile) -> None:
    ij = t.imagej_metadata
    assert ij is not None
    c, z = ij.get("channels", 1), ij.get("slices", 1)
    assert [(x["c"], x["z"], x["t"]) for _, x in m] == [
        (i % c, (i // c) % z, i // (c * z)) for i in range(len(t.pages))
    ]
    assert all(x["software"] == f"ImageJ {ij['ImageJ']}" for _, x in m)
    if "unit" in ij:  # mini-t1-head: unit=mm, XResolution pixels per mm, spacing in mm
        assert ij["unit"] == "mm"
        xres = t.pages[0].tags["XResolution"].value
        px = 1000.0 * xres[1] / xres[0]
        for _, x in m:
            assert x["pixel_size_um"] == pytest.approx([px, px], rel=1e-5)
            assert x["z_step_um"] == pytest.approx(1000.0 * ij["spacing"])
    else:
        assert all("pixel_size_um" not in x for _, x in m)


def _metamorph(m: list[tuple[int, dict[str, Any]]], t: tifffile.TiffFile) -> None:
    stk = t.stk_metadata
    assert stk is not None and stk["CalibrationUnits"] == "um" and stk["SpatialCalibration"]
    ((_, meta),) = m
    assert meta["pixel_size_um"] == [stk["YCalibration"], stk["XCalibration"]]  # 0.645 µm
    props = {p["name"]: p["value"] for p in stk["PlaneProperty"]}
    assert meta["channel"] == props["_IllumSetting_"]  # "Cy5"
    assert meta["objective"] == props["_MagSetting_"]  # "20x Plan Fluor ELWD"
    assert "Exposure: 300 ms" in t.pages[0].description  # MetaMorph's description line
    assert meta["exposure_s"] == pytest.approx(0.3)
    assert t.pages[0].tags["XResolution"].value == (72, 1)  # a display default, not used
    assert meta["software"] == t.pages[0].tags["Software"].value
    assert meta["acquired_at"] == _tiff_time(t.pages[0].tags["DateTime"].value)


def _nikon(m: list[tuple[int, dict[str, Any]]], t: tifffile.TiffFile) -> None:
    tags = t.pages[0].tags
    exif = tags["ExifTag"].value
    ((_, meta),) = m
    assert meta["instrument"] == f"{tags['Make'].value} {tags['Model'].value}"
    assert meta["software"] == tags["Software"].value
    assert meta["acquired_at"] == _tiff_time(exif["DateTimeOriginal"])  # not DateTime's save
    num, den = exif["ExposureTime"]
    assert meta["exposure_s"] == pytest.approx(num / den)
    assert "pixel_size_um" not in meta  # no resolution tags


def _fei(m: list[tuple[int, dict[str, Any]]], t: tifffile.TiffFile) -> None:
    fei = t.fei_metadata
    assert fei is not None
    ((_, meta),) = m
    scan = fei["Scan"]  # PixelWidth/PixelHeight in metres: 7.7 nm
    assert meta["pixel_size_um"] == pytest.approx(
        [scan["PixelHeight"] * 1e6, scan["PixelWidth"] * 1e6], rel=1e-5
    )
    when = datetime.strptime(f"{fei['User']['Date']} {fei['User']['Time']}", "%m/%d/%Y %I:%M:%S %p")
    assert meta["acquired_at"] == when.isoformat()
    assert meta["instrument"] == f"FEI {fei['System']['SystemType']}"  # "Teneo"
    assert t.pages[0].tags["XResolution"].value == (96, 1)  # a display default, not used


def _ome_bioformats(m: list[tuple[int, dict[str, Any]]], t: tifffile.TiffFile) -> None:
    planes = _ome_tiffdata(t)
    assert [(x["z"], x["c"], x["t"]) for _, x in m] == [planes[p] for p, _ in m]
    assert all(x["software"] == t.pages[0].tags["Software"].value for _, x in m)
    assert all("instrument" not in x and "pixel_size_um" not in x for _, x in m)  # none stated


def _mm14(m: list[tuple[int, dict[str, Any]]], t: tifffile.TiffFile) -> None:
    mm = t.micromanager_metadata
    assert mm is not None
    summary = mm["Summary"]
    ome = ET.fromstring(t.ome_metadata or "")
    date = next(e.text for e in ome.iter() if e.tag.endswith("AcquisitionDate"))
    planes = _ome_tiffdata(t)
    for page, meta in m:
        d = t.pages[page].tags["MicroManagerMetadata"].value
        assert (meta["z"], meta["c"], meta["t"]) == (
            d["SliceIndex"], d["ChannelIndex"], d["FrameIndex"]
        ) == planes[page]  # fmt: skip
        assert meta["channel"] == d["Channel"] == summary["ChNames"][d["ChannelIndex"]]
        assert meta["exposure_s"] == pytest.approx(d["Exposure-ms"] / 1000)
        assert meta["time_s"] == pytest.approx(d["ElapsedTime-ms"] / 1000)
        assert meta["pixel_size_um"] == [d["PixelSizeUm"]] * 2
        assert meta["z_step_um"] == summary["z-step_um"]
        assert meta["acquired_at"] == date  # only the OME-XML states it
        assert meta["software"] == f"Micro-Manager {summary['MicroManagerVersion']}"


def _ndtiff(m: list[tuple[int, dict[str, Any]]], t: tifffile.TiffFile) -> None:
    mm = t.micromanager_metadata
    assert mm is not None
    summary = mm["Summary"]
    order: list[str] = []  # channels in the order the acquisition's pages show them
    for page, meta in m:
        d = t.pages[page].tags["MicroManagerMetadata"].value
        axes = d["Axes"]
        channel = axes.get("channel", d["Channel"])
        order += [channel] if channel not in order else []
        assert meta["channel"] == channel
        assert meta["c"] == (order.index(channel) if "channel" in axes else d["ChannelIndex"])
        assert meta["t"] == axes.get("time", d["FrameIndex"])
        assert meta["z"] == axes.get("z", d["SliceIndex"])
        assert meta.get("position") == axes.get("position")
        assert meta["exposure_s"] == pytest.approx(float(d["Camera-Exposure"]) / 1000)
        assert meta["time_s"] == pytest.approx(d["ElapsedTime-ms"] / 1000)
        when = datetime.strptime(summary["DateAndTime"], "%Y/%m/%d %H:%M:%S")
        assert meta["acquired_at"] == when.isoformat()


def _aperio(m: list[tuple[int, dict[str, Any]]], t: tifffile.TiffFile) -> None:
    for page, meta in m:
        desc = t.pages[page].description  # "...|MPP = 0.4990|ScanScope ID = CPAPERIOCS|..."
        fields = dict(f.split(" = ", 1) for f in desc.split("|")[1:])
        assert meta["pixel_size_um"] == [float(fields["MPP"])] * 2  # 16x16 -> 16x16: scale 1
        assert meta["instrument"] == f"Aperio ScanScope {fields['ScanScope ID']}"
        assert meta["objective"] == f"{fields['AppMag']}x"
        when = datetime.strptime(f"{fields['Date']} {fields['Time']}", "%m/%d/%y %H:%M:%S")
        assert meta["acquired_at"] == when.isoformat()


def _plain(expect: dict[str, Any]) -> Any:
    def check(m: list[tuple[int, dict[str, Any]]], t: tifffile.TiffFile) -> None:
        assert all(meta == expect for _, meta in m), m

    return check


def _no_display_dpi(m: list[tuple[int, dict[str, Any]]], t: tifffile.TiffFile) -> None:
    assert t.pages[0].tags["XResolution"].value == (72, 1)  # Leica LAS: 72 dpi, no calibration
    assert [meta for _, meta in m] == [{}]


EXPECT = {
    # tifffile's shaped JSON declares only a shape; Software = "tifffile.py"
    "biaNotebooks/cancer_cell_migration_crop.tif": _plain({"software": "tifffile.py"}),
    "cellprofiler/5channel.tif": _imagej,
    "cellprofiler/MetamorphImage.tif": _metamorph,
    "cellprofiler/NikonTIF.tif": _nikon,
    "clesperanto/IXMtest_A02_s9.tif": _imagej,
    "clesperanto/mini-t1-head.tif": _imagej,
    "czitools/CH3_Fluorescence_8bit.tif": _imagej,
    "imageio/fei-sem-rbc.tif": _fei,
    "libvips/multi-channel-z-series.ome.tif": _ome_bioformats,
    "micromanager/1.4compatTest_3_MMStack_1-Pos_000_000.ome.tif": _mm14,
    "ndtiff/12_bit_pycromanager_mda_NDTiffStack.tif": _ndtiff,
    "ndtiff/labeled_positions_NDTiffStack.tif": _ndtiff,
    "openslide/small.svs": _aperio,
    "pims/tiff_stack.tif": _imagej,
    "rasterio/RGB.byte.tif": _plain({}),  # GeoTIFF map scale, no microscopy metadata
    "rasterio/goes.tif": _geotiff_masks,
    "scifio/leica_stack_Series014_z000_ch00.tif": _no_display_dpi,
}


@pytest.mark.parametrize("tif", sorted(EXPECT), indirect=True)
def test_file_rows_show_what_the_file_declares(tif: tifffile.TiffFile, rows: Rows) -> None:
    """Per plane: z/c/t, channel, exposure, time and calibration as the file states them."""
    name = str(Path(tif.filehandle.path).relative_to(REAL))
    EXPECT[name](rows[name], tif)


def test_ndtiff_channels_are_indexed_in_acquisition_order(rows: Rows) -> None:
    """The NDTiff MDA alternates DAPI and FITC over 4 time points (page JSON `Axes`)."""
    got = [(m["channel"], m["c"], m["t"]) for _, m in rows[NDTIFF_MDA]]
    # pages 0..7: Axes {"channel": DAPI|FITC, "time": 0..3}, DAPI first
    assert got == [(ch, c, t) for t in range(4) for c, ch in enumerate(["DAPI", "FITC"])]


@pytest.mark.parametrize(("workers", "slots"), [(1, 1), (2, 2), (1, 16)])
def test_the_same_rows_for_every_tuning(
    tmp_path: Path, dataset: Path, workers: int, slots: int
) -> None:
    """workers.count and slots_per_worker change neither rows, pages, metadata nor pixels."""
    other = ingest(tmp_path, workers=workers, slots=slots)
    assert _content(other) == _content(dataset)


def _content(dataset: Path) -> dict[tuple[str, int], tuple[str, bytes]]:
    """(source, page) -> (meta, row bytes) of every row."""
    con = sqlite3.connect(dataset / "index.sqlite")
    try:
        recs = con.execute("SELECT row, source, page, meta FROM images").fetchall()
        assert con.execute("SELECT COUNT(*) FROM failures").fetchone() == (0,)
    finally:
        con.close()
    with open_dataset(dataset) as ds:
        images = np.asarray(ds.images)
        return {(s, p): (json.dumps(json.loads(m), sort_keys=True), images[r].tobytes())
                for r, s, p, m in recs}  # fmt: skip


def _ome_tiffdata(t: tifffile.TiffFile) -> dict[int, tuple[int, int, int]]:
    """page -> (z, c, t) from the OME-XML's TiffData elements naming this file."""
    root = ET.fromstring(t.ome_metadata or "")
    name = Path(t.filehandle.path).name
    out = {}
    for td in (e for e in root.iter() if e.tag.endswith("}TiffData")):
        uuid = next((u for u in td if u.tag.endswith("}UUID")), None)
        if uuid is not None and uuid.get("FileName") not in (None, name):
            continue
        out[int(td.get("IFD", 0))] = tuple(int(td.get(f"First{d}", 0)) for d in "ZCT")
    return out  # type: ignore[return-value]


def _tiff_time(text: str) -> str:
    return datetime.strptime(text, "%Y:%m:%d %H:%M:%S").isoformat()
