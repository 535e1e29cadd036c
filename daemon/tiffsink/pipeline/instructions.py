"""What the supervisor's state machine tells the shell to do: the instructions that come out.

The shell (`pipeline.py`) runs them in order, each with the one object that does that
kind of I/O: the pool sends tasks, the committer moves rows and commits, the writer cuts
the pending tail, the feeder takes candidates back. An instruction that fails becomes an
event (a commit that meets a full disk: `CommitFailed`), whose instructions run after
those already queued.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..batch import Candidate
from ..dataset.records import FailureRecord, GrownRecord, RowRecord
from ..feed.report import CommitInfo


@dataclass(slots=True)
class Send:
    """Give a worker task `task_id`: decode `path` from `first_page` into `rows`, the
    pending rows reserved for it (the shell adds where each lies in the store's file).
    `version`: what the file's first chunk read (None for the first); `prefix`: the
    digests of the path's committed pages, for a first chunk of a path with rows."""

    task_id: int
    path: str
    root: str | None
    first_page: int
    rows: tuple[int, ...]
    version: tuple[int, int] | None
    prefix: tuple[str, ...]


@dataclass(slots=True, frozen=True)
class MoveRow:
    """Copy pending row `src` onto pending row `dst` (a hole): `src` becomes the hole."""

    src: int
    dst: int


@dataclass(slots=True, frozen=True)
class SwapRows:
    """Exchange pending rows `a` and `b` (a later batch's page is in the way)."""

    a: int
    b: int


@dataclass(slots=True)
class Commit:
    """Make batch `batch_id` durable: first its `moves` (in this order: then its rows are
    the ones right after the committed rows), then one index transaction with its
    `records`, `failures` and `grown` versions. Moves travel inside the commit they prepare,
    so a move that meets a full disk is that commit's failure."""

    batch_id: int
    moves: tuple[MoveRow | SwapRows, ...]
    records: list[RowRecord]
    failures: list[FailureRecord]
    grown: list[GrownRecord]


@dataclass(slots=True)
class WaitCommit:
    """Wait for the commit in flight to end and report it (disk full, or the run stops)."""


@dataclass(slots=True, frozen=True)
class Requeue:
    """Hand a candidate back to the feeder's queue: by the time it comes back, its version
    may be known (a path already in flight, or a batch undone by a full disk)."""

    cand: Candidate


@dataclass(slots=True)
class Drain:
    """Poll the pool until no task is in flight, handing its answers in (`Answers`), then
    say `Drained`: the rows about to be cut must have no writer left."""


@dataclass(slots=True)
class CutPending:
    """Drop every pending row and give its space back: only holes are left, or the disk is
    full and nothing uncommitted is kept."""


@dataclass(slots=True)
class Report:
    """A batch is committed: the feeders may act on its sources now."""

    info: CommitInfo


@dataclass(slots=True)
class PauseIntake:
    """The disk is full: `files` went back to the queue; take no batch until there is room."""

    files: int
    detail: str


@dataclass(slots=True)
class RowWriteFailed:
    """A worker could not write its rows: `full` (ENOSPC, EDQUOT) is answered with
    `DiskFull`; any other error ends the run (DatasetIOError, never retried)."""

    full: bool
    detail: str


Instruction = (
    Send
    | Commit
    | WaitCommit
    | Requeue
    | Drain
    | CutPending
    | Report
    | PauseIntake
    | RowWriteFailed
)
