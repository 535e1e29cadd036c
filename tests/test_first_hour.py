"""A new user's first hour: start-up mistakes, misleading messages, fixed files, simulate.

Each start-up mistake is one line on stderr naming the key or path, and exit 2 (which
systemd does not retry); each command says what is true about the dataset it was given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tiffsink.cli.parser import build_parser
from tiffsink.cli.simulate import simulate
from tiffsink.cli.text import printable
from tiffsink.config import ImageSpec
from tiffsink.dataset import index, lock
from tiffsink.dataset.layout import Layout
from tiffsink.dataset.records import FailureRecord, RowRecord
from tiffsink.dataset.writer import DatasetWriter
from tiffsink.errors import FAILURE_REASONS

from conftest import run_cli, small_sections, wait_for, write_config
from daemon_harness import DaemonProc, source_array, tiff_bytes

SPEC = ImageSpec(height=8, width=8)


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command (exit 2, no traceback)."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def run_daemon(tmp: Path, **sections: dict[str, object]) -> subprocess.CompletedProcess[str]:
    cfg = write_config(tmp / "t.toml", small_sections(tmp, **sections))
    return run_cli("run", "--config", str(cfg), timeout=60, cwd=tmp)


@pytest.fixture
def ro_mount(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs, where mounting is permitted; remounted read-only by the test."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


# -- start-up errors -------------------------------------------------------------------------
def test_an_inbox_that_is_a_file_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    """watch.directory pointing at a file: exit 2, one line naming watch.directory."""
    inbox = tmp_path / "inbox.tif"
    inbox.write_bytes(b"not a folder")
    line = one_line_error(run_daemon(tmp_path, watch={"directory": str(inbox)}))
    assert "watch.directory" in line and "is a file, not a folder" in line


def test_a_dataset_inside_the_inbox_is_refused(tmp_path: Path) -> None:
    """A dataset folder inside the watched folder: exit 2 naming dataset.directory, and
    nothing is created there."""
    inside = tmp_path / "inbox" / "dataset"
    line = one_line_error(run_daemon(tmp_path, dataset={"directory": str(inside)}))
    assert "dataset.directory" in line and "inside watch.directory" in line
    assert not inside.exists()


def test_a_read_only_dataset_stops_the_start_naming_it(ro_mount: Path, tmp_path: Path) -> None:
    """A dataset on a read-only file system: exit 2, one line naming the folder."""
    ds = ro_mount / "dataset"
    DatasetWriter(ds, ImageSpec(height=32, width=48)).close()
    subprocess.run(["mount", "-o", "remount,ro", str(ro_mount)], check=True)
    line = one_line_error(run_daemon(tmp_path, dataset={"directory": str(ds)}))
    assert str(ds) in line and "read-only file system" in line


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a folder to another user")
def test_a_dataset_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """A dataset folder owned by another uid: exit 2 naming the folder and both users."""
    ds = tmp_path / "dataset"
    DatasetWriter(ds, ImageSpec(height=32, width=48)).close()
    os.chown(ds, 4242, 4242)
    line = one_line_error(run_daemon(tmp_path))
    assert str(ds) in line and "uid 4242" in line and "tiffsink runs as" in line
    assert Layout.of(ds).index.stat().st_uid == 0  # untouched


# -- a fixed file ------------------------------------------------------------------------------
def test_a_row_clears_the_failure_record_of_its_source(tmp_path: Path) -> None:
    """Committing rows of a source deletes its earlier failure records, in that commit."""
    rec = RowRecord(0, "/in/a.tif", 0, 10, 2, "h", 8, 8, "uint16", 1, 0.0)
    with DatasetWriter(tmp_path / "ds", SPEC) as w:
        fail = FailureRecord("/in/a.tif", 5, 1, "truncated", "cut", 0.0)
        other = FailureRecord("/in/b.tif", 5, 1, "not_tiff", "junk", 0.0)
        w.commit([], [fail, other])
        w.write_row(source_array(1, (8, 8)).astype("uint16"))
        w.commit([rec], [])
        assert [f.source for f in index.failures(w.conn)] == ["/in/b.tif"]


def test_a_fixed_file_is_no_longer_listed_as_failed(tmp_path: Path) -> None:
    """truncated.tif fails; overwritten with a complete frame it becomes a row, and
    `failures` and `status` no longer list it."""
    d = DaemonProc(tmp_path)
    d.start()
    bad = d.inbox / "truncated.tif"
    bad.write_bytes(tiff_bytes(source_array(3))[:300])
    wait_for(lambda: d.failures(), 30, "the failure record")
    bad.write_bytes(tiff_bytes(source_array(3)))
    d.wait_rows(1)
    assert d.stop() == 0
    r = run_cli("failures", str(d.dataset))
    assert r.returncode == 0 and r.stdout.strip() == "0 failure(s)", r.stdout
    st = json.loads(run_cli("status", str(d.dataset), "--json").stdout)
    assert st["failures_total"] == 0 and st["rows"] == 1


# -- messages that say what is true ------------------------------------------------------------
@pytest.fixture
def small_ds(tmp_path: Path) -> Path:
    """An npy dataset of three rows from files named with a newline and an escape code."""
    src = tmp_path / "src"
    src.mkdir()
    for i, name in enumerate(["plain.tif", "two\nlines.tif", "\x1b[31mred.tif"]):
        (src / name).write_bytes(tiff_bytes(source_array(i)))
    (src / "broken\n.tif").write_bytes(b"II*\x00junk")
    cfg = write_config(tmp_path / "t.toml", small_sections(tmp_path))
    r = run_cli("ingest", str(src), "--config", str(cfg))
    assert r.returncode == 0, r.stderr  # a recorded failure is an outcome too
    return tmp_path / "dataset"


def test_export_into_another_dataset_names_its_own_flags(small_ds: Path, tmp_path: Path) -> None:
    """export --format zarr into an npy dataset names --format, not a config, and leaves
    out what npy does not set (shard rows, codec)."""
    line = one_line_error(run_cli("export", str(small_ds), str(small_ds), "--format", "zarr"))
    assert "--format: it has 'npy', this export asks for 'zarr'" in line
    assert "config" not in line and "None" not in line and "shard" not in line


def test_repair_while_a_writer_holds_the_dataset_says_so(small_ds: Path) -> None:
    """verify --repair on a locked dataset: exit 3, naming the PID and that plain verify
    works meanwhile; not a PROBLEM line."""
    fd = lock.acquire(Layout.of(small_ds))
    try:
        r = run_cli("verify", str(small_ds), "--repair")
    finally:
        os.close(fd)
    assert r.returncode == 3 and "PROBLEM" not in r.stdout, (r.stdout, r.stderr)
    assert f"PID {os.getpid()}" in r.stderr and "plain `tiffsink verify` works" in r.stderr
    assert run_cli("verify", str(small_ds), "--repair").returncode == 0


def test_retry_with_an_unknown_reason_lists_the_known_ones(small_ds: Path) -> None:
    """retry --reason bogus exits 2 listing every known reason, and clears nothing."""
    line = one_line_error(run_cli("retry", str(small_ds), "--reason", "bogus"))
    assert "--reason: unknown reason 'bogus'" in line
    assert all(reason in line for reason in FAILURE_REASONS)
    assert json.loads(run_cli("status", str(small_ds), "--json").stdout)["failures_total"] == 1


def test_ingest_of_no_matching_file_says_so_and_creates_nothing(tmp_path: Path) -> None:
    """ingest of a folder with no *.tif names the patterns and creates no dataset."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("no images")
    cfg = write_config(tmp_path / "t.toml", small_sections(tmp_path))
    line = one_line_error(run_cli("ingest", str(src), "--config", str(cfg)))
    assert "no file to ingest" in line and "'*.tif', '*.tiff'" in line and str(src) in line
    assert not (tmp_path / "dataset").exists()


def test_status_and_verify_agree_on_what_is_not_a_dataset(tmp_path: Path) -> None:
    """On a folder without dataset files, status and verify give the same one-line error."""
    (tmp_path / "x").write_text("")
    a = one_line_error(run_cli("status", str(tmp_path)))
    b = one_line_error(run_cli("verify", str(tmp_path)))
    assert a == b and "not a tiffsink dataset" in a


@pytest.mark.parametrize(
    ("cond", "why"),
    [('well"=B03', "quotes"), ("site=99999999999999999999999", "out of range"), ("x", "KEY=")],
)
def test_where_errors_are_one_line(small_ds: Path, cond: str, why: str) -> None:
    """A malformed --where is one line naming the condition, never a traceback."""
    line = one_line_error(run_cli("query", str(small_ds), "--where", cond))
    assert "--where" in line and why in line


def test_where_compares_values_with_their_json_type(tmp_path: Path) -> None:
    """site=true does not match site 1, site=1 does; well=1 does not match the text "1"."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("s1_w1.tif", "s2_wx.tif"):
        (src / name).write_bytes(tiff_bytes(source_array(len(name))))
    sec = small_sections(tmp_path, metadata={"path_pattern": r"s(?P<site>\d)_w(?P<well>\w)"})
    cfg = write_config(tmp_path / "t.toml", sec)
    assert run_cli("ingest", str(src), "--config", str(cfg)).returncode == 0
    ds = str(tmp_path / "dataset")

    def rows(cond: str) -> list[int]:
        r = run_cli("query", ds, "--where", cond, "--json")
        assert r.returncode == 0, r.stderr
        return [x["row"] for x in json.loads(r.stdout)]

    assert len(rows("site=1")) == 1 and rows("site=true") == []
    assert rows("well=x") != [] and rows('well="1"') == [] and len(rows("well=1")) == 1


def test_human_output_escapes_control_characters(small_ds: Path) -> None:
    """query and failures print names with a newline or an escape code on one line each,
    escaped; --json keeps the names exact."""
    out = run_cli("query", str(small_ds)).stdout
    assert "\x1b" not in out and "two\\nlines.tif" in out and "\\x1b[31mred.tif" in out
    assert len(out.splitlines()) == 3 + 1  # three rows and the count
    fails = run_cli("failures", str(small_ds)).stdout
    assert "broken\\n.tif" in fails and len(fails.splitlines()) == 2
    exact = json.loads(run_cli("query", str(small_ds), "--json").stdout)
    assert {Path(r["source"]).name for r in exact} >= {"two\nlines.tif", "\x1b[31mred.tif"}


def test_printable_keeps_ordinary_names_and_escapes_the_rest() -> None:
    """Unicode names stay as they are; control, format and backslash characters do not."""
    assert printable("µm ü 01.tif") == "µm ü 01.tif"
    assert printable("a\tb\\c\u202e") == "a\\tb\\\\c\\u202e"


# -- help and simulate --------------------------------------------------------------------------
def test_every_cli_option_has_a_help_line() -> None:
    """Every argument of every subcommand has help text."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {a.dest}"
        for name, sp in sub.choices.items()
        for a in sp._actions
        if not isinstance(a, argparse._HelpAction) and not a.help
    ]
    assert missing == []
    assert "images.zarr" in (parser.description or "")


def test_simulate_twice_never_overwrites(tmp_path: Path) -> None:
    """Two runs of simulate into one folder write distinct files: nothing is overwritten."""
    a = simulate(tmp_path, 3, 0, (16, 16), "uint16", "rename")
    first = {p: p.read_bytes() for p in a}
    b = simulate(tmp_path, 3, 0, (16, 16), "uint16", "rename")
    assert not set(a) & set(b)
    assert {p: p.read_bytes() for p in a} == first
    assert len(list(tmp_path.glob("*.tif"))) == 6


# -- install-service ----------------------------------------------------------------------------
def test_install_service_from_tmp_lets_the_unit_see_its_paths(tmp_path: Path) -> None:
    """A config and folders under /tmp give PrivateTmp=no (a private /tmp would hide
    them) and a note on stderr; `systemd-analyze verify` accepts the unit."""
    assert str(tmp_path).startswith("/tmp/")
    cfg = write_config(tmp_path / "t.toml", small_sections(tmp_path))
    r = run_cli("install-service", "--config", str(cfg), "--print")
    assert r.returncode == 0, r.stderr
    directives = [ln for ln in r.stdout.splitlines() if ln.startswith("PrivateTmp=")]
    assert directives == ["PrivateTmp=no"]
    assert "under a temporary folder" in r.stderr
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    unit = tmp_path / "units" / "tiffsink-tmp.service"
    unit.parent.mkdir()
    unit.write_text(r.stdout)
    v = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert v.returncode == 0 and v.stderr.strip() == "", v.stderr
