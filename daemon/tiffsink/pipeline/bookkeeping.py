"""The supervisor's bookkeeping: the state machine's data, and the queries the shell asks.

Every file in flight: the open batches and their jobs, the queue of jobs to decode, the
tasks with the workers, the pending rows (a `RowMap`), the batch being committed. Only
`SupervisorState` (`state.py`, its subclass) and the helpers it hands itself to
(`outcomes.py`, `dispatch.py`) change it; everyone else only asks.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence

import structlog

from ..dataset.index import now
from ..dataset.lookup import Version
from .events import TaskDone
from .instructions import RowWriteFailed, Send
from .jobs import Batch, Job, Row
from .rowmap import RowMap

log = structlog.get_logger("tiffsink")

MAX_OPEN_BATCHES = 2  # one decoding ahead of the one writing; the committing one aside


class Bookkeeping:
    """Every file between `Submit` and `Report`: the state machine's data and queries."""

    def __init__(
        self,
        committed: int,
        chunk: int,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = now,
    ) -> None:
        self.chunk = chunk  # pages per task of a multi-page file
        self.clock, self.wall = clock, wall  # batch timing; the records' time stamp
        self.rows = RowMap(committed)
        self.batches: deque[Batch] = deque()  # open batches; [0] is the head
        self.todo: deque[Job] = deque()  # jobs waiting for a task, started ones first
        self.tasks: dict[int, tuple[Job, Send]] = {}  # with a worker, by task id
        self.paths: set[str] = set()  # paths of the open and committing batches
        # The batch being committed, its gathered rows and the first of them.
        self.committing: tuple[Batch, list[Row], int] | None = None
        self.row_error: RowWriteFailed | None = None  # the first of a round of answers
        self.full: str | None = None  # disk full, waiting for the commit in flight
        self.full_detail = ""  # why the disk-full pause that is being prepared
        self.requeued = 0  # files a disk-full sent back, counted until the pause
        self.stopped = False
        self.batch_ids = 0  # the last batch id given out
        self.task_ids = 0  # the last task id given out
        # Bound once (after logging is set up): a filtered debug call is then free, where
        # the lazy module logger would bind anew on every call, per file.
        self.log = log.bind()
        self.debug = self.log.is_enabled_for(logging.DEBUG)  # skip building per-file events

    # -- queries (pure) -------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether any task is with a worker."""
        return bool(self.tasks)

    def can_accept(self) -> bool:
        """At most two batches: one writing/committing, one decoding ahead of it."""
        return len(self.batches) < MAX_OPEN_BATCHES

    def idle(self) -> bool:
        return not self.batches and self.committing is None

    def pending_files(self) -> int:
        running = len(self.committing[0].jobs) if self.committing else 0
        return sum(len(b.jobs) for b in self.batches) + running

    def in_flight(self, path: str) -> bool:
        """Whether a file of this path is in an open or committing batch."""
        return path in self.paths

    def versions_to_check(self, done: Sequence[TaskDone]) -> list[Version]:
        """The versions the shell must look up before handing these answers in: a file's
        first chunk that read another version than the feeder saw (it may be known)."""
        out: list[Version] = []
        for task, res in done:
            if res.failed:
                continue
            entry = self.tasks.get(task.task_id)
            if entry is None or entry[0].batch.aborted or entry[0].version is not None:
                continue
            cand = entry[0].cand
            if (res.size, res.mtime_ns) != (cand.size, cand.mtime_ns):
                out.append((cand.path, res.size, res.mtime_ns))
        return out
