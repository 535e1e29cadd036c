"""Pending rows: reserved for a task, written with a page, or holes; gathered at commit.

Workers write pages straight into the dataset rows reserved for them at dispatch, past
the committed rows, so the supervisor never copies pixels. Rows are positional, so before
a batch commits its rows must be exactly the next ones: `gather` says which of the
batch's rows that lie further out move into holes (failed, skipped or short files) or
swap with a later batch's rows. Usually there is nothing to move: a batch reserves its
rows in one run, and holes only come from failures. A row a worker is still writing is
never moved and never committed; a row left torn by a killed worker is a hole,
overwritten or cut.

Pure bookkeeping, part of the state machine (`state.py` owns the one instance): the moves
come back as instructions for the committer, which performs them on the dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..decode import PageInfo
from .instructions import MoveRow, SwapRows
from .jobs import Batch, Job, Row


class RowMap:
    """Who owns each pending row, from `committed` (the index's row count) to `cursor`."""

    def __init__(self, committed: int) -> None:
        self.committed = committed
        self.cursor = committed  # next row to reserve; committed..cursor-1 are pending
        self.reserved: dict[int, int] = {}  # row -> task id writing it
        self.written: dict[int, Row] = {}  # row -> its page; any other pending row is a hole

    def reserve(self, task_id: int, n: int) -> tuple[int, ...]:
        """The next `n` pending rows, for task `task_id` to write."""
        start = self.cursor
        self.cursor += n
        rows = tuple(range(start, self.cursor))
        for r in rows:
            self.reserved[r] = task_id
        return rows

    def end_task(self, rows: tuple[int, ...], job: Job, pages: Sequence[PageInfo]) -> None:
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

    def gather(self, batch: Batch) -> tuple[list[Row], list[MoveRow | SwapRows]] | None:
        """The batch's rows made the next ones after the committed rows, in row order, and
        the moves that do it on disk (in order).

        None when a target row is still being written by a later batch's task: the
        caller tries again once that task has answered.
        """
        rows = [row for job in batch.jobs for row in job.rows]
        base = self.committed
        end = base + len(rows)
        inside = {row.pos for row in rows if row.pos < end}
        targets = [p for p in range(base, end) if p not in inside]
        if any(p in self.reserved for p in targets):
            return None
        moves: list[MoveRow | SwapRows] = []
        outside = [row for row in rows if row.pos >= end]
        for row, q in zip(outside, targets, strict=True):
            other = self.written.get(q)
            if other is None:  # a hole: copy the page in, its old row becomes the hole
                moves.append(MoveRow(row.pos, q))
                del self.written[row.pos]
            else:  # a later batch's page: exchange the two rows
                moves.append(SwapRows(row.pos, q))
                other.pos = row.pos
                self.written[row.pos] = other
            row.pos = q
            self.written[q] = row
        rows.sort(key=lambda r: r.pos)
        return rows, moves

    def committed_rows(self, rows: list[Row]) -> None:
        """A commit of these (gathered) rows is done: they are the index's now."""
        for row in rows:
            del self.written[row.pos]
        self.committed += len(rows)

    def cut(self) -> None:
        """Every pending row is dropped (the writer cuts them): reserve from the committed
        rows again."""
        self.reserved.clear()
        self.written.clear()
        self.cursor = self.committed
