"""Shared test helpers: configs written to disk, the CLI as a subprocess, polling."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tiffsink.pipeline.arena import pid_alive

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="run long soak tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


def wait_for(pred: Callable[[], T], timeout_s: float = 30.0, what: str = "condition") -> T:
    """Poll `pred` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)  # polling interval, not synchronisation


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str | Path):
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for sec, kv in sections.items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in kv.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def small_sections(tmp: Path, **over: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A config for tests: small rows, 2 workers, short waits, everything under `tmp`."""
    s: dict[str, dict[str, Any]] = {
        "watch": {"directory": str(tmp / "inbox"), "settle_ms": 300, "rescan_interval_s": 0},
        "batch": {"max_files": 8, "max_wait_ms": 200},
        "image": {"height": 32, "width": 48, "dtype": "uint16"},
        "dataset": {"directory": str(tmp / "dataset")},
        "workers": {"count": 2, "timeout_s": 20.0},
        "log": {"format": "json", "level": "info"},
        "metrics": {"listen": ""},  # many test daemons at once: none takes the default port
    }
    for sec, kv in over.items():
        s.setdefault(sec, {}).update(kv)
    return s


def tiffsink_cmd() -> list[str]:
    return [sys.executable, "-m", "tiffsink"]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(
        [*tiffsink_cmd(), *args], capture_output=True, text=True, timeout=timeout, env=e, cwd=cwd
    )


def shm_leftovers() -> list[Path]:
    return sorted(Path("/dev/shm").glob("tiffsink-*")) if Path("/dev/shm").is_dir() else []


@pytest.fixture
def no_shm_leak() -> Iterator[None]:
    """Fail if the test leaves an arena whose owner has exited (a leak, not a live run)."""
    before = set(shm_leftovers())
    yield
    leaked = [p for p in set(shm_leftovers()) - before if not pid_alive(int(p.name.split("-")[1]))]
    assert leaked == [], f"shared-memory segments left behind: {leaked}"


@pytest.fixture(autouse=True)
def _reap_daemons() -> Iterator[None]:
    """Never leave a daemon of a failed test running (it would load later tests)."""
    yield
    if "daemon_harness" in sys.modules:
        sys.modules["daemon_harness"].reap()
