"""How a backfill reports: a running summary, and a progress bar or periodic log lines.

The ingest front end (`ingest.py`) keeps them, whichever engine runs the backfill.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..feed.report import CommitInfo

log = structlog.get_logger("tiffsink")

LOG_EVERY_S = 10.0


@dataclass
class Summary:
    """What a backfill did; `lines` is what `tiffsink ingest` prints at the end."""

    files_total: int = 0
    files_done: int = 0
    rows: int = 0
    ingested: int = 0
    skipped: int = 0
    bytes_done: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    interrupted: bool = False
    first_commit: tuple[float, int] | None = None  # (when, rows then)
    last_commit_at: float = 0.0

    def add(self, info: CommitInfo, at: float | None = None) -> int:
        """Count one commit (made at monotonic time `at`, default now); returns how many
        files it resolved."""
        at = time.monotonic() if at is None else at
        self.rows += info.rows
        if self.first_commit is None:
            self.first_commit = (at, self.rows)
        self.last_commit_at = at
        self.ingested += len(info.ingested)
        self.skipped += info.skipped
        for _cand, rec in info.failed:
            self.failures[rec.reason] += 1
        self.files_done += info.files
        self.bytes_done += sum(v[0] for _, v, _ in info.ingested)
        return info.files

    def skip(self) -> None:
        """A file whose version the index already holds."""
        self.skipped += 1
        self.files_done += 1

    @property
    def steady_rows_per_s(self) -> float | None:
        """Rows/s from the first commit to the last: the rate once the workers are up and
        the first batch is through, which is what a long backfill runs at (None before
        a second commit)."""
        if self.first_commit is None or self.last_commit_at <= self.first_commit[0]:
            return None
        t0, rows0 = self.first_commit
        return (self.rows - rows0) / (self.last_commit_at - t0)

    @property
    def complete(self) -> bool:
        return not self.interrupted and self.files_done == self.files_total

    def lines(self) -> list[str]:
        s = max(self.seconds, 1e-9)
        out = [
            f"rows added:   {self.rows} (from {self.ingested} files)",
            f"skipped:      {self.skipped} (already in the index or recorded as failed)",
            f"failures:     {sum(self.failures.values())}"
            + "".join(f"\n  {r}: {n}" for r, n in sorted(self.failures.items())),
            f"throughput:   {self.ingested / s:.1f} files/s, {self.rows / s:.1f} rows/s, "
            f"{self.bytes_done / s / 1e6:.1f} MB/s over {self.seconds:.1f} s",
        ]
        steady = self.steady_rows_per_s
        if steady is not None:
            out.append(f"steady:       {steady:.1f} rows/s after the first commit (no startup)")
        if self.interrupted:
            out.append(f"interrupted:  {self.files_total - self.files_done} files not processed")
        return out


class Progress:
    """A tqdm bar on a terminal, a log line every 10 s otherwise (the journal, CI)."""

    def __init__(self, summary: Summary, tty: bool) -> None:
        self.s = summary
        self.t0 = time.monotonic()
        self.last_log = self.t0
        self.bar: Any = None
        if tty:
            from tqdm import tqdm

            self.bar = tqdm(total=summary.files_total, unit="file", dynamic_ncols=True)

    def update(self, files: int) -> None:
        now = time.monotonic()
        el = max(now - self.t0, 1e-9)
        mbs = self.s.bytes_done / el / 1e6
        if self.bar is not None:
            self.bar.update(files)
            self.bar.set_postfix_str(f"{mbs:.0f} MB/s", refresh=False)
        elif now - self.last_log >= LOG_EVERY_S:
            self.last_log = now
            rate = self.s.files_done / el
            left = self.s.files_total - self.s.files_done
            log.info(
                "ingest.progress",
                files=self.s.files_done,
                total=self.s.files_total,
                files_per_s=round(rate, 1),
                mb_per_s=round(mbs, 1),
                eta_s=round(left / rate) if rate else None,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
