"""Bounded logs: repeated events of one kind are a few lines and a count (logthrottle),
in the helper and in a real daemon fed a flood of empty files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiffsink.logthrottle import BURST, LogThrottle

from conftest import wait_for
from daemon_harness import DaemonProc


class Lines:
    """A structlog stand-in that keeps what was logged."""

    def __init__(self) -> None:
        self.out: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.out.append((level, event, kw))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def counted(lines: Lines, event: str) -> int:
    """Events accounted for: one per full line, `repeated` per summary line."""
    return sum(kw.get("repeated", 1) for _, e, kw in lines.out if e == event)


def test_twenty_thousand_of_a_kind_are_a_few_lines_per_minute_and_all_counted() -> None:
    """20,000 `file.failed` (empty) over 10 minutes: at most BURST + 1 lines a minute."""
    lines, clock = Lines(), Clock()
    t = LogThrottle(lines, interval_s=60.0, clock=clock, timer=False)
    for i in range(20_000):
        clock.t += 0.03  # 600 s in all
        t.warning("file.failed", by="reason", path=f"/in/{i}.tif", reason="empty", detail="0 B")
    t.flush(final=True)
    assert len(lines.out) <= (BURST + 1) * 11
    assert counted(lines, "file.failed") == 20_000
    summaries = [kw for _, _, kw in lines.out if "repeated" in kw]
    assert summaries and all(kw["reason"] == "empty" and "path" not in kw for kw in summaries)


def test_kinds_are_counted_apart() -> None:
    """A flood of one reason never hides the first line of another."""
    lines = Lines()
    t = LogThrottle(lines, clock=Clock(), timer=False)
    for i in range(100):
        t.warning("file.failed", by="reason", path=f"/e{i}", reason="empty")
    t.warning("file.failed", by="reason", path="/bad.tif", reason="corrupt")
    assert lines.out[-1] == ("warning", "file.failed", {"path": "/bad.tif", "reason": "corrupt"})
    assert len(lines.out) == BURST + 1


def test_a_flood_that_stops_is_summarised_when_its_interval_ends() -> None:
    """The timer writes the count once the interval is over, with no later event."""
    lines = Lines()
    t = LogThrottle(lines, interval_s=0.2)
    for i in range(BURST + 7):
        t.debug("http.client_error", by="kind", kind="timeout", peer=f"127.0.0.1:{i}")
    summary = wait_for(lambda: [kw for _, _, kw in lines.out if "repeated" in kw], 10, "summary")
    assert summary == [{"kind": "timeout", "repeated": 7, "over_s": 0.2}]
    assert lines.out[-1][0] == "debug"


def test_empty_files_flood_a_daemon_log_only_a_few_lines(tmp_path: Path) -> None:
    """300 empty files: every one recorded, the log has BURST lines and a count for the rest."""
    n = 300
    d = DaemonProc(tmp_path).start()
    for i in range(n):
        (d.inbox / f"empty{i:03d}.tif").write_bytes(b"")
    wait_for(lambda: len(d.failures()) == n, 60, f"{n} failures")
    assert set(d.failures().values()) == {"empty"}
    assert d.stop() == 0  # what is still only counted is written on the way out
    failed = d.events("file.failed")
    assert len([e for e in failed if "repeated" not in e]) == BURST
    assert sum(e.get("repeated", 1) for e in failed) == n
    assert len([e for e in d.events() if e["level"] != "info"]) < 3 * BURST
