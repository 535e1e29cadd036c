"""The messages that cross the supervisor/worker process boundary, pickled on a pipe.

Pixels never travel in them: a Task names the pending dataset rows a worker writes its
pages into, and its answer, a `decode.outcome.Outcome` keyed by the task's id, only says
what was written there. Everything here must stay
small and picklable; they are NamedTuples because the supervisor unpickles one per
file, and a tuple is smaller and quicker to load than a dataclass (an answer: 160 vs 297
bytes, 3.3 vs 4.5 us). Tasks go out as plain tuples (a bundle of 32 pickles in 3 us, not
25) and are rebuilt by the worker.
"""

from __future__ import annotations

from typing import NamedTuple

READY = "ready"  # a worker's first message: it imported everything and mapped its heartbeat


class Task(NamedTuple):
    """Decode up to len(rows) pages of `path` from `first_page` into those rows."""

    task_id: int
    path: str
    root: str | None
    first_page: int
    # Dataset rows reserved for the pages, one each: the worker writes page i into the
    # pending slot at offsets[i] (invisible until the supervisor commits).
    rows: tuple[int, ...]
    offsets: tuple[int, ...]
    version: tuple[int, int] | None  # (size, mtime_ns) the first chunk saw; None for chunk 0
    # Chunk 0 of a path with committed pages: their digests. If the file begins with
    # exactly those pages, the worker skips them and decodes from the first new page.
    prefix: tuple[str, ...] = ()


class Lost(NamedTuple):
    """A task whose worker died or hung (supervisor side: the pool reports it, no worker
    sends it); `reason` is decoder_crash or timeout."""

    task: Task
    reason: str
    detail: str
