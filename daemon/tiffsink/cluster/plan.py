"""Rows for decoded groups, cut into whole shards: the client's bookkeeping.

Groups of files are decoded anywhere, in any order; as each one's outcomes arrive the
client gives its pages the next rows (so rows stay dense whatever fails), and as soon as
the rows reach the end of a shard, that shard becomes one write task over the slices of
the groups holding its chunks. One task per shard, so never two writers on one shard
(zarr-python issue 3682). Plain data, client thread only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..batch import Candidate
from ..dataset.records import FailureRecord, RowRecord
from ..decode.outcome import Outcome


@dataclass
class ShardJob:
    """One shard to write and then commit: which group slices fill it, and the index rows
    (and failures, and finished files) that its commit records."""

    index: int
    keep: int  # committed chunks the shard already holds
    parts: list[tuple[Any, int, int]] = field(default_factory=list)  # (group future, a, b)
    records: list[RowRecord] = field(default_factory=list)
    failures: list[tuple[Candidate, FailureRecord]] = field(default_factory=list)
    files_done: list[tuple[Candidate, tuple[int, int], int]] = field(default_factory=list)
    future: Any = None


class ShardPlanner:
    """Assigns rows to decoded pages and closes a ShardJob at every shard boundary."""

    def __init__(self, committed: int, rows_per_shard: int) -> None:
        self.S = rows_per_shard
        self.next_row = committed
        self.current = ShardJob(committed // rows_per_shard, committed % rows_per_shard)
        self.ready: list[ShardJob] = []  # closed shards, to be submitted in order

    def add(
        self,
        group: Any,
        outcomes: list[Outcome],
        cands: list[Candidate],
        skip: Callable[[Outcome], bool],
    ) -> int:
        """Give the group's pages rows; returns how many files were skipped (`skip`)."""
        skipped, chunk = 0, 0
        at = time.time()
        for o in outcomes:
            cand = cands[o.key]
            if o.failed:
                rec = FailureRecord(cand.path, o.size, o.mtime_ns, o.reason, o.detail, at)
                self.current.failures.append((cand, rec))
                continue
            if skip(o):
                skipped += 1
                chunk += len(o.pages)
                continue
            holder = self.current  # the job whose shard holds the file's last page
            for info in o.pages:
                holder = self.current
                version = (o.size, o.mtime_ns)
                row = RowRecord.of_page(self.next_row, cand.path, version, o.content_hash, info, at)
                holder.records.append(row)
                self._take(group, chunk)
                chunk += 1
            holder.files_done.append((cand, (o.size, o.mtime_ns), len(o.pages)))
        return skipped

    def _take(self, group: Any, chunk: int) -> None:
        """Row next_row holds `group`'s chunk `chunk`; close the shard when it is full."""
        parts = self.current.parts
        if parts and parts[-1][0] is group and parts[-1][2] == chunk:
            parts[-1] = (group, parts[-1][1], chunk + 1)
        else:
            parts.append((group, chunk, chunk + 1))
        self.next_row += 1
        if self.next_row % self.S == 0:
            self.ready.append(self.current)
            self.current = ShardJob(self.next_row // self.S, 0)

    def flush(self) -> None:
        """The feed is over: the partly filled last shard (or failures alone) closes too."""
        if self.current.records or self.current.failures or self.current.files_done:
            self.ready.append(self.current)
            self.current = ShardJob(self.next_row // self.S, self.next_row % self.S)
