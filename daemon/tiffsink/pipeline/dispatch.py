"""Which file decodes next, how many of its pages, and into which pending rows.

Files are taken in batch order; started files (more pages to come, or a retry after a
crash) go first, since their batch waits on them. A multi-page file takes up to `chunk`
pages (and rows) per task; a worker decodes them into its own scratch rows and writes
each into the row reserved for it here. Part of the state machine: it changes only the
`Bookkeeping` it is given and returns `Send` instructions for the pool.
"""

from __future__ import annotations

from .bookkeeping import Bookkeeping
from .instructions import Instruction, Send


def dispatch(st: Bookkeeping, room: int, out: list[Instruction]) -> None:
    """Send tasks while there are jobs and `room` in the workers' queues."""
    todo, chunk = st.todo, st.chunk
    while todo and room > 0:
        room -= 1
        job = todo.popleft()
        n = chunk if job.version is None else min(chunk, job.pages_total - job.next_page)
        st.task_ids += 1
        rows = st.rows.reserve(st.task_ids, max(1, n))
        cand = job.cand
        # A path with rows may have grown by whole pages: its first chunk is told the
        # committed pages' digests, and skips them if the file begins with them.
        prefix = job.prior.digests if job.prior is not None and job.version is None else ()
        send = Send(st.task_ids, cand.path, cand.root, job.next_page, rows, job.version, prefix)
        st.tasks[send.task_id] = (job, send)
        out.append(send)
