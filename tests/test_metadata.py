"""What each row shows: metadata from OME-TIFF, ImageJ, Micro-Manager and paths, the
training-dataset API, `tiffsink query`, and the index migration."""

from __future__ import annotations

import json
import multiprocessing as mp
import pickle
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from tiffsink import open_dataset
from tiffsink.config import ImageSpec
from tiffsink.dataset.meta import set_label
from tiffsink.dataset.records import RowRecord
from tiffsink.dataset.writer import DatasetWriter

from conftest import run_cli, small_sections, write_config


def ingest(tmp: Path, src: Path, fmt: str = "npy", **meta: Any) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    over: dict[str, Any] = {"image": {"pages": "all"}, "dataset": {"format": fmt}}
    if meta:
        over["metadata"] = meta
    conf = write_config(tmp / "cfg.toml", small_sections(tmp, **over))
    r = run_cli("ingest", str(src), "--config", str(conf))
    assert r.returncode == 0, r.stderr
    return tmp / "dataset"


def metas(dataset: Path) -> list[dict[str, Any]]:
    with open_dataset(dataset) as ds:
        return [ds.meta(i) for i in range(len(ds))]


def test_ome_tiff_planes_get_z_c_channel_and_pixel_size(tmp_path: Path) -> None:
    """A ZCYX OME-TIFF: each row knows its z, c, channel name and physical pixel size."""
    src = tmp_path / "src"
    src.mkdir()
    data = np.arange(2 * 3 * 8 * 10, dtype=np.uint16).reshape(2, 3, 8, 10)
    tifffile.imwrite(
        src / "stack.ome.tif",
        data,
        ome=True,
        metadata={
            "axes": "ZCYX",
            "Channel": {"Name": ["DAPI", "GFP", "RFP"]},
            "PhysicalSizeX": 0.25,
            "PhysicalSizeY": 0.5,
        },
    )
    got = metas(ingest(tmp_path, src))
    assert len(got) == 6
    # tifffile stores ZCYX planes in that order: page = z * 3 + c.
    assert [(m["z"], m["c"], m["channel"]) for m in got] == [
        (z, c, name) for z in range(2) for c, name in enumerate(["DAPI", "GFP", "RFP"])
    ]
    assert all(m["pixel_size_um"] == [0.5, 0.25] for m in got)


def test_imagej_hyperstack_planes_get_c_z_t_time_and_pixel_size(tmp_path: Path) -> None:
    """An ImageJ TZCYX hyperstack: CZT order, frame interval, spacing, calibration."""
    src = tmp_path / "src"
    src.mkdir()
    data = np.ones((2, 3, 2, 8, 10), dtype=np.uint16)  # T Z C Y X
    tifffile.imwrite(
        src / "hyper.tif",
        data,
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.2),
        metadata={"axes": "TZCYX", "unit": "um", "spacing": 1.5, "finterval": 2.0},
    )
    got = metas(ingest(tmp_path, src))
    assert len(got) == 12
    want = [(c, z, t) for t in range(2) for z in range(3) for c in range(2)]
    assert [(m["c"], m["z"], m["t"]) for m in got] == want
    assert [m["time_s"] for m in got] == [t * 2.0 for _, _, t in want]
    assert got[5]["stage_um"] == [None, None, 3.0]  # z = 2 at 1.5 um
    assert got[0]["pixel_size_um"] == [0.2, 0.2]


def test_micro_manager_pages_carry_their_own_metadata(tmp_path: Path) -> None:
    """Micro-Manager's per-page JSON tag: indices, channel, time, exposure, stage."""
    src = tmp_path / "src"
    src.mkdir()
    with tifffile.TiffWriter(src / "mm.tif") as tw:
        for i in range(3):
            mm = {
                "ChannelIndex": i % 2, "SliceIndex": 0, "FrameIndex": i // 2,
                "Channel": ["Cy5", "DAPI"][i % 2], "ElapsedTime-ms": 500.0 * i,
                "Exposure-ms": 20.0 + i, "XPositionUm": 100.5, "YPositionUm": -3.0,
                "ZPositionUm": 7.25, "PixelSizeUm": 0.65,
            }  # fmt: skip
            tw.write(
                np.full((8, 10), i, np.uint16),
                extratags=[(51123, "s", 0, json.dumps(mm), True)],
                software="Micro-Manager",
            )
    got = metas(ingest(tmp_path, src))
    assert [m["channel"] for m in got] == ["Cy5", "DAPI", "Cy5"]
    assert [m["t"] for m in got] == [0, 0, 1]
    assert [m["time_s"] for m in got] == [0.0, 0.5, 1.0]
    assert got[2]["exposure_s"] == pytest.approx(0.022)
    assert got[1]["stage_um"] == [100.5, -3.0, 7.25]
    assert got[0]["pixel_size_um"] == [0.65, 0.65]
    assert got[0]["software"] == "Micro-Manager" and "instrument" not in got[0]


def test_standard_tags_give_time_instrument_and_pixel_size(tmp_path: Path) -> None:
    """DateTime, Make/Model (the instrument), Software, and resolution in centimetres."""
    src = tmp_path / "src"
    src.mkdir()
    tifffile.imwrite(
        src / "plain.tif",
        np.ones((8, 10), np.uint16),
        datetime="2025:03:04 05:06:07",
        resolution=(10000 / 0.5, 10000 / 0.4),  # pixels per cm: 0.5 um x, 0.4 um y
        resolutionunit="CENTIMETER",
        extratags=[(271, "s", 0, "Nikon", True), (272, "s", 0, "Ti2", True)],
        software="NIS",
    )
    (m,) = metas(ingest(tmp_path, src))
    assert m["acquired_at"] == "2025-03-04T05:06:07"
    assert (m["instrument"], m["software"]) == ("Nikon Ti2", "NIS")
    assert m["pixel_size_um"] == [0.4, 0.5]


PLATE = r"(?P<plate>[^/]+)/(?P<well>[A-P]\d{2})_s(?P<site>\d+)_w(?P<channel>\w+)\.tif"


def plate(src: Path) -> None:
    for p, wells in (("P1", ["A01", "B03"]), ("P2", ["A01"])):
        for well in wells:
            for site in (1, 2):
                for ch in ("DAPI", "GFP"):
                    f = src / p / f"{well}_s{site}_w{ch}.tif"
                    f.parent.mkdir(parents=True, exist_ok=True)
                    tifffile.imwrite(f, np.full((8, 10), site, np.uint16))


@pytest.mark.parametrize("fmt", ["npy", "zarr"])
def test_a_plate_tree_gets_keys_from_its_paths(tmp_path: Path, fmt: str) -> None:
    """path_pattern groups become keys (digits as numbers); rows() and column() select."""
    src = tmp_path / "src"
    plate(src)
    d = ingest(tmp_path, src, fmt, path_pattern=PLATE, label="well")
    with open_dataset(d) as ds:
        assert len(ds) == 12
        b03 = ds.rows(well="B03")
        assert len(b03) == 4
        assert {ds.record(int(r)).source.split("/src/")[1] for r in b03} == {
            f"P1/B03_s{s}_w{c}.tif" for s in (1, 2) for c in ("DAPI", "GFP")
        }
        assert len(ds.rows(plate="P1", site=2, channel="GFP")) == 2
        wells = ds.column("well")
        assert list(wells[b03]) == ["B03"] * 4 and len(wells) == 12
        assert ds.column("site").dtype == np.int64
        assert ds.label_counts() == {"A01": 8, "B03": 4}
        img, label = ds[int(b03[0])]
        assert label == "B03" and img.shape == (32, 48)
    st = json.loads(run_cli("status", str(d), "--json").stdout)
    assert st["label"] == "well" and st["labels"] == {"A01": 8, "B03": 4}
    assert "A01: 8" in run_cli("status", str(d)).stdout


def test_query_prints_matching_rows_as_json(tmp_path: Path) -> None:
    """tiffsink query --where well=B03 --where site=1 --json: row, source, page, meta."""
    src = tmp_path / "src"
    plate(src)
    d = ingest(tmp_path, src, path_pattern=PLATE)
    r = run_cli("query", str(d), "--where", "well=B03", "--where", "site=1", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert sorted(o["meta"]["channel"] for o in out) == ["DAPI", "GFP"]
    assert all(o["source"].endswith(".tif") and o["page"] == 0 and "row" in o for o in out)
    bad = run_cli("query", str(d), "--where", "nonsense")
    assert bad.returncode == 2 and "--where" in bad.stderr


def test_a_path_that_does_not_match_is_kept_or_failed_as_configured(tmp_path: Path) -> None:
    """on_mismatch = "keep": a row with no path keys; "fail": a no_metadata_match failure."""
    src = tmp_path / "src"
    plate(src)
    tifffile.imwrite(src / "P1" / "stray.tif", np.ones((8, 10), np.uint16))
    kept = ingest(tmp_path / "k", src, path_pattern=PLATE)
    with open_dataset(kept) as ds:
        assert len(ds) == 13 and len(ds.rows(plate="P1")) == 8
    failed = ingest(tmp_path / "f", src, path_pattern=PLATE, on_mismatch="fail")
    with open_dataset(failed) as ds:
        assert len(ds) == 12
        (f,) = ds.failures()
        assert f.reason == "no_metadata_match" and f.source.endswith("stray.tif")


def test_malformed_ome_xml_still_gives_a_row_and_one_warning(tmp_path: Path) -> None:
    """Broken metadata never costs a file: the row is there with what the other sources
    say, and the log names the file."""
    src = tmp_path / "src"
    src.mkdir()
    tifffile.imwrite(
        src / "bad.ome.tif",
        np.ones((8, 10), np.uint16),
        description='<?xml version="1.0"?><OME><Image><Pixels SizeZ="x"',
        metadata=None,
        software="acq",
    )
    conf = write_config(tmp_path / "cfg.toml", small_sections(tmp_path))
    r = run_cli("ingest", str(src), "--config", str(conf))
    assert r.returncode == 0
    warn = [json.loads(x) for x in r.stderr.splitlines() if "metadata_unreadable" in x]
    assert len(warn) == 1 and warn[0]["path"].endswith("bad.ome.tif")
    assert metas(tmp_path / "dataset") == [{"software": "acq"}]


def test_a_config_with_a_pattern_without_groups_names_the_key(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('[metadata]\npath_pattern = "plain"\n')
    r = run_cli("ingest", str(tmp_path), "--config", str(conf))
    assert r.returncode == 2 and "metadata.path_pattern" in r.stderr


# -- a training dataset ---------------------------------------------------------------------

SPEC = ImageSpec(height=8, width=8, dtype="uint16")


def many(d: Path, n: int) -> None:
    with DatasetWriter(d, SPEC) as w:
        recs = []
        for i in range(n):
            w.write_row(np.full(SPEC.row_shape, i % 65535, np.uint16))
            meta = json.dumps({"cls": f"c{i % 3}"})
            recs.append(RowRecord(i, f"/in/{i}.tif", 0, 1, 1, "x", 8, 8, "u2", 1, 1.0, meta))
        w.commit(recs, [])
        set_label(w.conn, "cls")


def test_the_dataset_pickles_by_path_not_pixels(tmp_path: Path) -> None:
    """10,000 rows (1.3 MB of pixels) pickle into under 1 KB, and unpickle to the rows."""
    many(tmp_path, 10_000)
    with open_dataset(tmp_path) as ds:
        blob = pickle.dumps(ds)
        assert len(blob) < 1000
        again = pickle.loads(blob)
        img, label = again[9_999]
        assert img[0, 0] == 9_999 and label == "c0" and len(again) == 10_000


def _read_in_child(ds: Any, rows: list[int]) -> list[tuple[int, str]]:
    return [(int(ds[r][0][0, 0]), ds[r][1]) for r in rows]


def test_spawned_workers_read_what_the_parent_reads(tmp_path: Path) -> None:
    """The dataset passed to spawn workers (as a DataLoader does) reads the same rows."""
    many(tmp_path, 300)
    rows = [0, 1, 150, 299]
    with open_dataset(tmp_path) as ds:
        here = _read_in_child(ds, rows)
        with mp.get_context("spawn").Pool(2) as pool:
            there = pool.starmap(_read_in_child, [(ds, rows), (ds, rows[::-1])])
    assert there[0] == here and there[1] == here[::-1]


def test_torch_dataloader_iterates_it_with_spawn_workers(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="torch is optional; not installed here")
    many(tmp_path, 64)
    ds = open_dataset(tmp_path, transform=lambda a: a.astype(np.float32))
    loader = torch.utils.data.DataLoader(
        ds, batch_size=16, num_workers=2, multiprocessing_context="spawn"
    )
    seen = sum(len(x) for x, _ in loader)
    assert seen == 64


def test_a_version_1_index_gains_the_meta_column_on_open(tmp_path: Path) -> None:
    """An index made before metadata: readers see {} and the writer migrates it."""
    many(tmp_path, 3)
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    conn.execute("ALTER TABLE images DROP COLUMN page_hash")  # format 3's, after meta
    conn.execute("ALTER TABLE images DROP COLUMN meta")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
    conn.commit()
    conn.close()
    with open_dataset(tmp_path) as ds:  # read-only: sees the old schema as it is
        assert ds.meta(0) == {} and list(ds.column("cls")) == [None] * 3
    DatasetWriter(tmp_path, SPEC).close()
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    cols = [r[1] for r in conn.execute("PRAGMA table_info(images)")]
    version = conn.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()
    conn.close()
    assert "meta" in cols and version == ("3",)
    with open_dataset(tmp_path) as ds:
        assert ds.meta(2) == {} and len(ds.rows(cls="c0")) == 0
