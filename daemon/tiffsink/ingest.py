"""`tiffsink ingest`: backfill existing folders through the same pipeline as the daemon.

The folder walk is lazy and only a few batches of paths are held at once, so the
supervisor's memory does not grow with the number of files. A re-run skips every file
version already in the index (rows or recorded failures): a backfill is resumable.
"""

from __future__ import annotations

import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from .config import Config
from .pipeline import Candidate, CommitInfo, Pipeline
from .pool import sweep_stale_arenas
from .scan import NameFilter, walk
from .store import DatasetWriter

log = structlog.get_logger("tiffsink")


@dataclass
class Summary:
    files_total: int = 0
    bytes_total: int = 0
    files_done: int = 0
    rows: int = 0
    ingested: int = 0
    skipped: int = 0
    bytes_done: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    interrupted: bool = False

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
        if self.interrupted:
            out.append(f"interrupted:  {self.files_total - self.files_done} files not processed")
        return out


class _Progress:
    """A tqdm bar on a terminal, a log line every 10 s otherwise."""

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
        elif now - self.last_log >= 10:
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


def _count(
    roots: list[Path], wanted: NameFilter, recursive: bool, exclude: list[Path]
) -> tuple[int, int]:
    n = b = 0
    for root in roots:
        for _, st in walk(root, wanted, recursive, exclude):
            n, b = n + 1, b + st.st_size
    return n, b


def ingest(config: Config, sources: list[Path], progress: bool | None = None) -> Summary:
    """Backfill `sources` into `config.dataset.directory`; Ctrl-C commits what is in flight."""
    for src in sources:
        if not src.is_dir():
            from .errors import TiffsinkError

            raise TiffsinkError(src, "not a folder")
    wanted = NameFilter(config.watch.patterns, config.watch.ignore_patterns)
    exclude = [
        p
        for p in (
            config.sources.done_directory,
            config.sources.failed_directory,
            config.dataset.directory,
        )
        if p
    ]
    roots = [src.resolve() for src in sources]
    summary = Summary()
    summary.files_total, summary.bytes_total = _count(roots, wanted, True, exclude)
    sweep_stale_arenas()
    writer = DatasetWriter(config.dataset.directory, config.image)
    bar = _Progress(summary, sys.stderr.isatty() if progress is None else progress)
    from .batch import Batcher

    batcher = Batcher(config.batch.max_files, config.batch.max_wait_ms)

    def on_commit(info: CommitInfo) -> None:
        summary.rows += info.rows
        summary.ingested += len(info.ingested)
        summary.skipped += info.skipped
        for _cand, rec in info.failed:
            summary.failures[rec.reason] += 1
        done = len(info.ingested) + len(info.failed) + info.skipped
        summary.files_done += done
        summary.bytes_done += sum(v[0] for _, v, _ in info.ingested)
        log.debug("batch.committed", rows=info.rows, files=done, ms=round(info.commit_ms, 1))
        bar.update(done)

    def candidates() -> Iterator[Candidate]:
        for root in roots:
            for path, st in walk(root, wanted, True, exclude):
                if writer.known([(path, st.st_size, st.st_mtime_ns)]):
                    summary.skipped += 1
                    summary.files_done += 1
                    bar.update(1)
                    continue
                yield Candidate(path, str(root), st.st_size, st.st_mtime_ns)

    stop = {"n": 0}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only a flag (logging in a handler can deadlock); the loop below reports it.
        stop["n"] += 1
        if stop["n"] > 1:
            raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.monotonic()
    pipeline = Pipeline(config, writer, on_commit, requeue=batcher.add)
    try:
        feed: Iterator[Candidate] | None = candidates()
        stop_logged = False
        while True:
            while feed is not None and not stop["n"] and len(batcher) < 2 * config.batch.max_files:
                c = next(feed, None)
                if c is None:
                    feed = None
                else:
                    batcher.add(c)
            if stop["n"] and not stop_logged:
                stop_logged = True
                log.warning(
                    "ingest.stopping",
                    detail="committing the batch in flight; press again to stop at once",
                )
            flushing = feed is None or bool(stop["n"])
            if not stop["n"] and pipeline.can_accept() and batcher.ready(flush=flushing):
                pipeline.submit(batcher.take())
                continue
            if pipeline.idle() and (stop["n"] or (feed is None and not len(batcher))):
                break
            pipeline.step(0.05)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        pipeline.close()
        writer.close()
        bar.close()
    summary.seconds = time.monotonic() - t0
    summary.interrupted = bool(stop["n"])
    return summary
