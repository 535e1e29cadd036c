"""What a commit tells the feeders, whichever engine made it.

A feeder acts on a source (moves it, deletes it, counts it) only after the commit that
made its rows, or its failure, durable. The local pipeline and the cluster backfill both
report each commit as one `CommitInfo`, built by keyword.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..batch import Candidate
from ..dataset.records import FailureRecord


@dataclass(kw_only=True)
class CommitInfo:
    """What one commit made durable; feeders act on sources only after this."""

    batch_id: int
    rows: int
    ingested: list[tuple[Candidate, tuple[int, int], int]]  # candidate, version, pages
    failed: list[tuple[Candidate, FailureRecord]]
    skipped: int
    commit_ms: float
    batch_ms: float
    first_row: int

    @property
    def files(self) -> int:
        """Files this commit resolved, whatever their outcome."""
        return len(self.ingested) + len(self.failed) + self.skipped
