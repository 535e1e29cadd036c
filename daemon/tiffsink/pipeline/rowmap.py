"""Pending rows: reserved for a worker, written with a page, or holes; gathered at commit.

Workers write pages straight into the dataset rows reserved for them at dispatch, past
the committed rows, so the supervisor never copies pixels. Rows are positional, so before
a batch commits its rows must be exactly the next ones: `gather` moves the batch's rows
that lie further out into the holes (failed, skipped or short files) or swaps them with a
later batch's rows. Usually there is nothing to move: a batch reserves its rows in one
run, and holes only come from failures. A row a worker is still writing is never moved
and never committed; a row left torn by a killed worker is a hole, overwritten or cut.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dataset import DatasetWriter
from ..decode import PageInfo
from .jobs import Batch, Job


@dataclass(eq=False)
class Row:
    """A page written into pending row `pos` (which moves if the row is gathered)."""

    pos: int
    job: Job
    info: PageInfo


class RowMap:
    """Who owns each pending row; supervisor main thread only."""

    def __init__(self, writer: DatasetWriter) -> None:
        self.writer = writer
        self.reserved: dict[int, int] = {}  # row -> task id writing it
        self.written: dict[int, Row] = {}  # row -> its page; any other pending row is a hole

    def reserve(self, task_id: int, n: int) -> tuple[int, ...]:
        rows = tuple(self.writer.reserve(n))
        for r in rows:
            self.reserved[r] = task_id
        return rows

    def end_task(self, rows: tuple[int, ...], job: Job, pages: list[PageInfo]) -> None:
        """A task's answer: its first len(pages) rows hold those pages, the rest are holes."""
        for r in rows:
            del self.reserved[r]
        for r, info in zip(rows, pages, strict=False):
            row = Row(r, job, info)
            self.written[r] = row
            job.rows.append(row)

    def release(self, rows: tuple[int, ...]) -> None:
        """A task that wrote nothing usable (failed, lost, skipped): its rows are holes."""
        for r in rows:
            self.reserved.pop(r, None)

    def take_back(self, job: Job) -> None:
        """A file failed after some of its pages were written: those rows become holes."""
        for row in job.rows:
            del self.written[row.pos]
        job.rows.clear()

    def gather(self, batch: Batch) -> list[Row] | None:
        """Make the batch's rows the next ones after the committed rows, in row order.

        None when a target row is still being written by a later batch's task: the
        caller tries again once that task has answered.
        """
        rows = [row for job in batch.jobs for row in job.rows]
        base = self.writer.committed
        end = base + len(rows)
        inside = {row.pos for row in rows if row.pos < end}
        targets = [p for p in range(base, end) if p not in inside]
        if any(p in self.reserved for p in targets):
            return None
        outside = [row for row in rows if row.pos >= end]
        for row, q in zip(outside, targets, strict=True):
            other = self.written.get(q)
            if other is None:  # a hole: copy the page in, its old row becomes the hole
                self.writer.move_row(row.pos, q)
                del self.written[row.pos]
            else:  # a later batch's page: exchange the two rows
                self.writer.swap_rows(row.pos, q)
                other.pos = row.pos
                self.written[row.pos] = other
            row.pos = q
            self.written[q] = row
        rows.sort(key=lambda r: r.pos)
        return rows

    def committed(self, rows: list[Row]) -> None:
        for row in rows:
            del self.written[row.pos]

    def clear(self) -> None:
        self.reserved.clear()
        self.written.clear()
