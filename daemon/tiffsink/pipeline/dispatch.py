"""Which file decodes next, into which shared-memory slots.

Slots are the pipeline's memory bound. Files are taken in batch order; a multi-page file
takes up to `chunk` slots per task. Batches behind the head may decode ahead, but they
keep their pages in their slots until they become the head, so they may use at most half
of the slots: otherwise a multi-page head file could wait forever for a free slot.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from .jobs import Batch, Job
from .messages import Task
from .pool import Pool


class Dispatcher:
    """The queue of jobs to decode and the tasks in flight; supervisor main thread only."""

    def __init__(self, pool: Pool, chunk: int) -> None:
        self.pool, self.arena, self.chunk = pool, pool.arena, chunk
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
        """The job and task a result or a loss is about; the task is no longer in flight."""
        return self.tasks.pop(task_id)

    def release(self, slots: Sequence[int]) -> None:
        self.arena.free.extend(slots)

    def dispatch(self, batches: Sequence[Batch]) -> None:
        """Send tasks while there are jobs, free slots and room in the workers' queues."""
        arena = self.arena
        while self.todo and arena.free and self.pool.capacity > 0:
            job = self.todo[0]
            if job.batch is not batches[0] and self._ahead_slots(batches) >= arena.n // 2:
                break
            self.todo.popleft()
            n = min(self.chunk, len(arena.free))
            if job.version is not None:
                n = min(n, job.pages_total - job.next_page)
            slots = tuple(arena.free.popleft() for _ in range(max(1, n)))
            self._ids += 1
            task = Task(self._ids, job.cand.path, job.cand.root, job.next_page, slots, job.version)
            self.tasks[task.task_id] = (job, task)
            self.pool.submit(task)

    def _ahead_slots(self, batches: Sequence[Batch]) -> int:
        """Slots taken by batches behind the head (decoding or holding pages)."""
        head = batches[0]
        held = sum(len(j.held) for b in batches if b is not head for j in b.jobs)
        return held + sum(len(t.slots) for j, t in self.tasks.values() if j.batch is not head)
