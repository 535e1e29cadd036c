"""Run `tiffsink run` as a real subprocess and read what it logged and committed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from tiffsink import open_dataset
from tiffsink.cli.simulate import write_chunked
from tiffsink.errors import TiffsinkError

__all__ = ["DaemonProc", "source_array", "tiff_bytes", "write_chunked"]

from conftest import small_sections, tiffsink_cmd, wait_for, write_config

LIVE: list[DaemonProc] = []  # killed by conftest's reaper after each test


def reap() -> None:
    """Kill what a failed test left running (daemon and workers, by process group)."""
    while LIVE:
        d = LIVE.pop()
        if d.proc is not None and d.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(d.proc.pid, signal.SIGKILL)
            d.proc.wait(30)


class DaemonProc:
    def __init__(self, tmp: Path, env: dict[str, str] | None = None, **sections: dict[str, Any]):
        self.tmp = tmp
        self.sections = small_sections(tmp, **sections)
        self.inbox = Path(self.sections["watch"]["directory"])
        self.dataset = Path(self.sections["dataset"]["directory"])
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.config = write_config(tmp / "tiffsink.toml", self.sections)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.start_cmd_prefix: list[str] = []  # e.g. ["fiu-run", "-x"]
        LIVE.append(self)

    @property
    def log_path(self) -> Path:
        return self.tmp / f"daemon-{self.runs}.log"

    def start(self, wait_ready: bool = True) -> DaemonProc:
        self.runs += 1
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [*self.start_cmd_prefix, *tiffsink_cmd(), "run", "--config", str(self.config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        if wait_ready:
            wait_for(lambda: self.events("daemon.ready") or self._died(), 60, "daemon.ready")
            assert self.proc.poll() is None, self.log_path.read_text()
        return self

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        if not self.log_path.exists():
            return out
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict) and (name is None or ev.get("event") == name):
                out.append(ev)
        return out

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill_group(self) -> None:
        """SIGKILL the daemon and its workers at once, as a power cut would."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._log.close()

    def stop(self, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.wait(timeout)
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        rc = self.proc.wait(timeout)
        self._log.close()
        return rc

    def rows(self) -> dict[str, list[Any]]:
        """source path -> index records, from committed state."""
        try:
            ds = open_dataset(self.dataset)
        except TiffsinkError:
            return {}
        with ds:
            out: dict[str, list[Any]] = {}
            for row in range(len(ds)):
                rec = ds.record(row)
                out.setdefault(rec.source, []).append(rec)
            return out

    def wait_rows(self, n: int, timeout: float = 60) -> dict[str, list[Any]]:
        def enough() -> dict[str, list[Any]] | None:
            if self._died():
                raise AssertionError("daemon died:\n" + self.log_path.read_text()[-3000:])
            r = self.rows()
            return r if sum(len(v) for v in r.values()) >= n else None

        return wait_for(enough, timeout, f"{n} rows")

    def failures(self) -> dict[str, str]:
        try:
            ds = open_dataset(self.dataset)
        except TiffsinkError:
            return {}
        with ds:
            return {f.source: f.reason for f in ds.failures()}


def source_array(i: int, shape: tuple[int, int] = (64, 96)) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.integers(0, 65535, size=shape, dtype=np.uint16)


def tiff_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    tifffile.imwrite(buf, arr)
    return buf.getvalue()
