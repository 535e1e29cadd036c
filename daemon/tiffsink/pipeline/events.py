"""What the shell tells the supervisor's state machine: the events that go in.

Each event is something that happened outside the machine (a feeder handed files over,
workers answered, a commit ended, the disk filled, the run stops), with whatever I/O
the machine needs already done: the shell does the index lookups at submit, the version
check of files that changed since the feeder saw them (the versions come from
`SupervisorState.versions_to_check`, a pure query) and the `stat` of a lost task's file,
and hands the answers in here. So the machine itself never touches a disk, a pipe or a
clock it was not given, and tests drive it with plain values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from ..batch import Candidate
from ..dataset.lookup import Version
from ..dataset.records import CommittedPages
from ..decode.outcome import Outcome
from .messages import Lost, Task

TaskDone = tuple[Task, Outcome]  # a worker's answer, as `Pool.poll` returns it
TaskLost = Lost  # a task whose worker crashed or hung (decoder_crash or timeout)


@dataclass(slots=True)
class Submit:
    """A feeder's batch of candidates, and what the index said about them: `known`, the
    versions it holds already (rows or failures), and `prior`, the committed pages of the
    paths with rows (a grown file is decoded from its first new page). `room`: tasks the
    pool takes now."""

    cands: Sequence[Candidate]
    known: AbstractSet[Version]
    prior: Mapping[str, CommittedPages]
    room: int


@dataclass(slots=True)
class Answers:
    """One poll of the pool: tasks done and tasks lost, in the order the pool gave them.

    `known`: which of `versions_to_check(done)` the index holds (each such file is then a
    skip); `on_disk`: by task id, the (size, mtime_ns) of a lost task's file whose version
    no worker had read yet ((-1, -1) if it is gone), for its failure record."""

    done: Sequence[TaskDone]
    lost: Sequence[TaskLost] = ()
    known: AbstractSet[Version] = frozenset()
    on_disk: Mapping[int, tuple[int, int]] = field(default_factory=dict)


@dataclass(slots=True)
class Advance:
    """The loop's step is over: commit the head batch if it is complete, then send tasks
    while the pool has `room` for them."""

    room: int


@dataclass(slots=True)
class CommitDone:
    """The committer made batch `batch_id` durable in `commit_ms`."""

    batch_id: int
    commit_ms: float


@dataclass(slots=True)
class CommitFailed:
    """Batch `batch_id` was not committed because the disk is full (ENOSPC while its rows
    were gathered or made durable, or SQLITE_FULL): nothing of it is in the index. Any
    other commit error poisons the writer and ends the run; it is no event."""

    batch_id: int
    detail: str


@dataclass(slots=True)
class DiskFull:
    """A worker could not write its rows: the disk is full (`detail` for the log)."""

    detail: str


@dataclass(slots=True)
class Drained:
    """After `Drain`: no task is with a worker any more."""


@dataclass(slots=True)
class Stop:
    """The run ends: wait for the commit in flight; nothing more is submitted."""


Event = Submit | Answers | Advance | CommitDone | CommitFailed | DiskFull | Drained | Stop
