"""What a worker's answer means for its file: pages to place, a retry, or a failure.

A result's pages go to `placement`; the first chunk of a file fixes its version (and may
find it already in the index: a skip); a crash is retried once, since the OOM killer may
have picked the worker for another's sake; everything else is recorded as a failure,
and the pages the file already had in its batch are taken back.
"""

from __future__ import annotations

import os
from collections import deque

import structlog

from ..dataset import DatasetWriter
from ..dataset.index import FailureRecord, now
from .dispatch import Dispatcher
from .jobs import Batch, Job
from .messages import Failure, Result, Task
from .placement import Placement
from .pool import Lost

log = structlog.get_logger("tiffsink")

MAX_CRASH_ATTEMPTS = 2  # a crash may be the machine's fault (OOM killer): try once more


class Outcomes:
    """Handles results and losses in the supervisor's main thread; `batches` is the
    pipeline's open batches (read only here, to tell whether a file's batch is the head)."""

    def __init__(
        self,
        writer: DatasetWriter,
        dispatcher: Dispatcher,
        placement: Placement,
        batches: deque[Batch],
    ) -> None:
        self.writer, self.dispatcher, self.placement = writer, dispatcher, placement
        self.batches = batches

    def finish(self, task: Task, out: Result | Failure) -> None:
        job, _ = self.dispatcher.take(task.task_id)
        if job.batch.aborted:
            self.dispatcher.release(task.slots)
            return
        if isinstance(out, Failure):
            self.dispatcher.release(task.slots)
            size, mtime = out.size, out.mtime_ns
            if size < 0 and job.cand.size is not None and job.cand.mtime_ns is not None:
                # Refused before it was opened (FIFO, symlink): record the version the
                # feeder saw, so a rescan finds it known instead of retrying it forever.
                size, mtime = job.cand.size, job.cand.mtime_ns
            self.fail(job, size, mtime, out.reason, out.detail)
            return
        if job.version is None:
            version = (out.size, out.mtime_ns)
            if self.writer.known([(job.cand.path, *version)]):
                self.dispatcher.release(task.slots)
                job.skipped = job.finished = True
                return
            job.version, job.pages_total = version, out.pages_total
            job.content_hash = out.content_hash or ""
        log.debug(
            "file.decoded",
            path=job.cand.path,
            pages=len(out.pages),
            first_page=task.first_page,
            decode_ms=round(out.decode_ms, 2),
        )
        if not out.pages:
            self.dispatcher.release(task.slots)
            self.fail(job, *job.version, "corrupt", f"page {job.next_page} yielded no image")
            return
        head = self.batches[0] is job.batch
        for slot, info in zip(task.slots, out.pages, strict=False):
            self.placement.place(job, slot, info, head)
        self.dispatcher.release(task.slots[len(out.pages) :])
        job.next_page += len(out.pages)
        if job.next_page < job.pages_total:
            self.dispatcher.resume_first(job)  # finish started files first: slots are taken
        else:
            job.finished = True

    def lost(self, lo: Lost) -> None:
        job, task = self.dispatcher.take(lo.task.task_id)
        self.dispatcher.release(task.slots)
        if job.batch.aborted:
            return
        job.attempts += 1
        log.warning("worker.restarted", reason=lo.reason, path=job.cand.path, detail=lo.detail)
        if lo.reason == "decoder_crash" and job.attempts < MAX_CRASH_ATTEMPTS:
            self.dispatcher.resume_first(job)
            return
        size, mtime = job.version or _stat_version(job.cand.path)
        self.fail(job, size, mtime, lo.reason, lo.detail)

    def fail(self, job: Job, size: int, mtime_ns: int, reason: str, detail: str) -> None:
        """Record the failure and take back any rows the file already had in this batch."""
        job.failure = FailureRecord(job.cand.path, size, mtime_ns, reason, detail, now())
        job.finished = True
        self.placement.take_back(job, head=job.batch is self.batches[0])
        log.warning("file.failed", path=job.cand.path, reason=reason, detail=detail)


def _stat_version(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return (-1, -1)
    return st.st_size, st.st_mtime_ns
