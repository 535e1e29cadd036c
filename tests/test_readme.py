"""The README's Python snippets and commands still run, against a dataset like the one
they describe (rows with a `well` and a `channel` from the path), in npy and zarr."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tiffsink.cli.parser import build_parser

from conftest import ROOT, run_cli, small_sections, write_config
from daemon_harness import source_array, tiff_bytes
from s3server import CREDENTIALS, S3Server

README = (ROOT / "README.md").read_text()
PATTERN = r"(?P<well>[A-P]\d\d)_(?P<channel>[A-Za-z]+)_\d+\.tif"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def commands() -> list[list[str]]:
    """Every `.venv/bin/tiffsink ...` command of the README's sh blocks, as argv."""
    out = []
    for block in blocks("sh"):
        for part in re.split(r"&&|\n", block.replace("\\\n", " ")):
            words = shlex.split(part)
            if words and words[0] == ".venv/bin/tiffsink":
                out.append(words[1:])
    return out


@pytest.fixture(scope="module", params=["npy", "zarr"])
def workdir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding `dataset/` of 24 rows in wells B03/C04, channels DAPI/GFP."""
    tmp = tmp_path_factory.mktemp(f"readme-{request.param}")
    src = tmp / "src"
    src.mkdir()
    for i in range(24):
        name = f"{('B03', 'C04')[i % 2]}_{('DAPI', 'GFP')[i // 2 % 2]}_{i}.tif"
        (src / name).write_bytes(tiff_bytes(source_array(i)))
    sections = small_sections(
        tmp, metadata={"path_pattern": PATTERN}, dataset={"format": request.param}
    )
    cfg = write_config(tmp / "t.toml", sections)
    r = run_cli("ingest", str(src), "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    return tmp


def test_the_readme_has_python_snippets_and_commands() -> None:
    """The README shows Python and shell usage (so the tests below test something)."""
    assert len(blocks("python")) >= 3 and len(commands()) >= 4


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_each_python_snippet_runs(workdir: Path, index: int) -> None:
    """Each ```python block of the README runs as written, in a folder holding `dataset/`
    (the zarr snippet only against a zarr dataset)."""
    code = blocks("python")[index]
    if ("images.zarr" in code) != (workdir / "dataset" / "images.zarr").exists():
        pytest.skip("this snippet is for the other format")
    env = dict(os.environ)
    server = None
    if "s3://bucket/prefix" in code:  # a real S3 API server holding the dataset's copy
        server = S3Server()
        env |= {**CREDENTIALS, "AWS_ENDPOINT_URL": server.endpoint}
        server.bucket("bucket")
        p = run_cli("publish", str(workdir / "dataset"), "s3://bucket/prefix", env=env)
        assert p.returncode == 0, p.stderr
    try:
        r = subprocess.run(
            [sys.executable, "-c", code],
            cwd=workdir, capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
    finally:
        if server is not None:
            server.stop()
    assert r.returncode == 0, f"{code}\n{r.stderr}"


def test_every_readme_command_parses() -> None:
    """Every tiffsink command line in the README is accepted by the argument parser."""
    parser = build_parser()
    for argv in commands():
        parser.parse_args(argv)  # exits (SystemExit) on an unknown option or value


def test_the_readme_commands_on_a_dataset_run(workdir: Path) -> None:
    """The README's status, preview and query commands run on a dataset as written."""
    ran = 0
    for argv in commands():
        if argv[0] in ("status", "preview", "query"):
            r = run_cli(*argv, cwd=workdir)
            assert r.returncode == 0, (argv, r.stderr)
            ran += 1
    assert ran >= 2
    assert (workdir / "sheet.png").stat().st_size > 0


def test_the_readme_simulate_command_writes_what_it_says(tmp_path: Path) -> None:
    """The README's simulate command (as written, 50 frames at 5 Hz) writes 50 frames."""
    (argv,) = [a for a in commands() if a[0] == "simulate"]
    r = run_cli(*argv, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / argv[1]).glob("*.tif"))) == 50
