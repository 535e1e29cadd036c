"""The supervisor's bookkeeping records: a Job per file, a Batch per commit, a Row per page.

Plain data, owned by the state machine (`state.py`) in the supervisor's main thread; the
committer thread gets only the records built from them (`records.py`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..batch import Candidate
from ..dataset.records import CommittedPages, FailureRecord
from ..decode import PageInfo


@dataclass(eq=False)
class Job:
    """One file of a batch: its version once read, pages done, and how it ended."""

    cand: Candidate
    batch: Batch
    version: tuple[int, int] | None = None  # (size, mtime_ns) the first chunk read
    content_hash: str = ""
    pages_total: int = 1
    next_page: int = 0
    attempts: int = 0  # worker crashes on this file so far
    finished: bool = False
    skipped: bool = False  # its version turned out to be in the index already
    failure: FailureRecord | None = None
    rows: list[Row] = field(default_factory=list)  # pending rows holding its pages
    prior: CommittedPages | None = None  # the path's committed pages, if it has rows
    grown_from: int = 0  # > 0: this version begins with that many committed pages

    def finish(self) -> None:
        """The file's outcome is known (rows, failure or skip)."""
        if not self.finished:
            self.finished = True
            self.batch.unresolved -= 1


@dataclass(eq=False)
class Batch:
    """The files committed together; rows are positional, so batches commit in order."""

    id: int
    jobs: list[Job] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)  # when it was submitted
    aborted: bool = False  # disk full: its files went back to the queue
    unresolved: int = 0  # jobs not finished yet: checked every loop step, so kept, not summed

    def add(self, job: Job) -> None:
        self.jobs.append(job)
        self.unresolved += 1

    def resolved(self) -> bool:
        return self.unresolved == 0


@dataclass(eq=False)
class Row:
    """A page written into pending row `pos` (which moves if the row is gathered)."""

    pos: int
    job: Job
    info: PageInfo
