"""What a gathered batch commits, and what its commit reports: built from its jobs and rows.

Pure functions of the state machine's records, so the committer thread gets plain index
records and never reads a Job the main thread may still change.
"""

from __future__ import annotations

from ..dataset.records import GrownRecord, RowRecord
from ..feed.report import CommitInfo
from .instructions import Commit, MoveRow, SwapRows
from .jobs import Batch, Row


def row_records(rows: list[Row], at: float) -> list[RowRecord]:
    """The index rows of a batch: one per gathered row, in row order."""
    return [
        RowRecord.of_page(
            row.pos,
            row.job.cand.path,
            row.job.version or (-1, -1),
            row.job.content_hash,
            row.info,
            at,
        )
        for row in rows
    ]


def grown_records(batch: Batch, at: float) -> list[GrownRecord]:
    """The batch's file versions that began with their path's committed pages."""
    return [
        GrownRecord(j.cand.path, *j.version, *j.prior.base, j.grown_from, j.pages_total, at)
        for j in batch.jobs
        if j.grown_from and j.prior is not None and j.version is not None
        if j.failure is None and not j.skipped
    ]


def commit_of(batch: Batch, rows: list[Row], moves: list[MoveRow | SwapRows], at: float) -> Commit:
    """The Commit instruction for a gathered batch, its records stamped `at`."""
    failures = [j.failure for j in batch.jobs if j.failure is not None]
    return Commit(batch.id, tuple(moves), row_records(rows, at), failures, grown_records(batch, at))


def commit_info(
    batch: Batch, rows: int, first_row: int, commit_ms: float, batch_ms: float
) -> CommitInfo:
    """What the feeders learn of a committed batch."""
    jobs = batch.jobs
    return CommitInfo(
        batch_id=batch.id,
        rows=rows,
        ingested=[
            (j.cand, j.version, j.pages_total)
            for j in jobs
            if j.version is not None and j.failure is None and not j.skipped
        ],
        failed=[(j.cand, j.failure) for j in jobs if j.failure is not None],
        skipped=sum(1 for j in jobs if j.skipped),
        commit_ms=commit_ms,
        batch_ms=batch_ms,
        first_row=first_row,
    )
