"""Which file decodes next, into which shared-memory slots and which dataset rows.

Slots are the workers' scratch for decoded pages and the pipeline's memory bound; a task
holds its slots only until it answers, because the worker writes each page into the
dataset row reserved for it here. Files are taken in batch order; started files (more
pages to come, or a retry after a crash) go first, since their batch waits on them. A
multi-page file takes up to `chunk` slots (and rows) per task.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .jobs import Job
from .messages import Task
from .pool import Pool


class Dispatcher:
    """The queue of jobs to decode and the tasks in flight; supervisor main thread only."""

    def __init__(
        self,
        pool: Pool,
        chunk: int,
        reserve: Callable[[int, int], tuple[int, ...]],
        offset: Callable[[int], int],
    ) -> None:
        self.pool, self.arena, self.chunk, self.reserve = pool, pool.arena, chunk, reserve
        self.offset = offset  # a pending row's byte offset in the file workers write
        self.todo: deque[Job] = deque()
        self.tasks: dict[int, tuple[Job, Task]] = {}
        self._ids = 0

    @property
    def busy(self) -> bool:
        """Whether any task is with a worker."""
        return bool(self.tasks)

    def add(self, job: Job) -> None:
        self.todo.append(job)

    def resume_first(self, job: Job) -> None:
        """Queue a started (or retried) file ahead of the rest: its batch waits on it."""
        self.todo.appendleft(job)

    def clear(self) -> None:
        self.todo.clear()

    def take(self, task_id: int) -> tuple[Job, Task]:
        """The job and task a result or a loss is about; its slots are free again."""
        job, task = self.tasks.pop(task_id)
        self.arena.free.extend(task.slots)
        return job, task

    def dispatch(self) -> None:
        """Send tasks while there are jobs, free slots and room in the workers' queues."""
        arena = self.arena
        # With a dataset, workers decode into their own scratch and write the rows out:
        # shared-memory slots are only for pages the caller reads back.
        scratch = self.pool.sink is not None
        room = self.pool.capacity  # computed once: it sums over the workers
        while self.todo and (scratch or arena.free) and room > 0:
            room -= 1
            job = self.todo.popleft()
            n = self.chunk if scratch else min(self.chunk, len(arena.free))
            if job.version is not None:
                n = min(n, job.pages_total - job.next_page)
            n = max(1, n)
            slots = () if scratch else tuple(arena.free.popleft() for _ in range(n))
            self._ids += 1
            rows = self.reserve(self._ids, n)
            offsets = tuple(map(self.offset, rows))
            cand = job.cand
            prefix = job.prior.digests if job.prior is not None and job.version is None else ()
            task = Task(
                self._ids,
                cand.path,
                cand.root,
                job.next_page,
                slots,
                rows,
                offsets,
                job.version,
                prefix,
            )
            self.tasks[task.task_id] = (job, task)
            self.pool.submit(task)
        self.pool.flush()
