"""Decoded pages become dataset rows in batch order, copied once from slot to file.

Rows are positional, so only the oldest open batch (the head) writes: each page goes from
its worker's slot straight into the next pending row. Pages of later batches wait in
their slots and are written when their batch becomes the head. A file that fails after
some of its pages were written has them taken back: the batch's last pending rows are
moved into the holes and the pending tail is shortened, so rows stay contiguous.
"""

from __future__ import annotations

from ..dataset import DatasetWriter
from ..decode import PageInfo
from .arena import Arena
from .dispatch import Dispatcher
from .jobs import Batch, Job


class Placement:
    """Writes decoded pages into pending rows; supervisor main thread only."""

    def __init__(self, writer: DatasetWriter, arena: Arena, dispatcher: Dispatcher) -> None:
        self.writer, self.arena, self.dispatcher = writer, arena, dispatcher

    def place(self, job: Job, slot: int, info: PageInfo, head: bool) -> None:
        """Write the page now (head batch) or hold its slot until the batch is the head."""
        if not head:
            job.held.append((slot, info))
            return
        self.writer.write_row(self.arena.view(slot))
        self.dispatcher.release([slot])
        job.batch.rows.append((job, info))

    def promote(self, batch: Batch) -> None:
        """`batch` is the head now: its rows start at the cursor; write what it holds."""
        batch.base = self.writer.cursor
        for job in batch.jobs:
            for slot, info in job.held:
                self.place(job, slot, info, head=True)
            job.held.clear()

    def drop_held(self, job: Job) -> None:
        self.dispatcher.release([s for s, _ in job.held])
        job.held.clear()

    def take_back(self, job: Job, head: bool) -> None:
        """Remove every page of a failed file from its batch (held slots or pending rows)."""
        self.drop_held(job)
        rows = job.batch.rows
        if not head or not any(j is job for j, _ in rows):
            return
        base = job.batch.base
        for i in range(len(rows) - 1, -1, -1):
            if rows[i][0] is job:
                last = len(rows) - 1
                if i != last:
                    self.writer.move_row(base + last, base + i)
                    rows[i] = rows[last]
                rows.pop()
        self.writer.truncate_pending(base + len(rows))
