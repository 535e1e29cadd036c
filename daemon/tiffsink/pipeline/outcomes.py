"""What a worker's answer means for its file: rows written, a retry, or a failure.

A result's pages are already in their reserved rows; the first chunk of a file fixes its
version (and may find it already in the index: a skip, its rows become holes; or find
that it begins with the file's committed pages: only the pages after them are rows); a crash is
retried once, since the OOM killer may have picked the worker for another's sake;
everything else is recorded as a failure, and the rows the file already had become holes.
A worker that could not write its rows reports the dataset's error, raised afterwards.
"""

from __future__ import annotations

import logging
import os

import structlog

from ..dataset import DatasetWriter
from ..dataset.index import FailureRecord, now
from ..errors import DatasetError, DatasetFullError, DatasetIOError
from ..logthrottle import throttle
from .dispatch import Dispatcher
from .jobs import Job
from .messages import Failure, Result, Task
from .pool import Lost
from .rowmap import RowMap

log = structlog.get_logger("tiffsink")

MAX_CRASH_ATTEMPTS = 2  # a crash may be the machine's fault (OOM killer): try once more
DATASET_REASONS = ("dataset_full", "dataset_io_error")  # a worker's row write failed


class Outcomes:
    """Handles results and losses in the supervisor's main thread."""

    def __init__(self, writer: DatasetWriter, dispatcher: Dispatcher, rowmap: RowMap) -> None:
        self.writer, self.dispatcher, self.rowmap = writer, dispatcher, rowmap
        self.dataset_error: DatasetError | None = None
        # Bound once (after logging is set up): a filtered debug call is then free, where
        # the lazy module logger would bind anew on every call, per file.
        self.log = log.bind()
        self.debug = self.log.is_enabled_for(logging.DEBUG)  # skip building per-file events

    def raise_dataset_error(self) -> None:
        """After a round of answers: the first row-write error a worker reported, if any."""
        err, self.dataset_error = self.dataset_error, None
        if err is not None:
            raise err

    def finish(self, task: Task, out: Result | Failure) -> None:
        job, _ = self.dispatcher.take(task.task_id)
        if job.batch.aborted:
            self.rowmap.release(task.rows)
            return
        if isinstance(out, Failure):
            self.rowmap.release(task.rows)
            if out.reason in DATASET_REASONS:
                self._dataset_failure(out)
                self.dispatcher.resume_first(job)  # not the file's fault
                return
            size, mtime = out.size, out.mtime_ns
            if size < 0 and job.cand.size is not None and job.cand.mtime_ns is not None:
                # Refused before it was opened (FIFO, symlink): record the version the
                # feeder saw, so a rescan finds it known instead of retrying it forever.
                size, mtime = job.cand.size, job.cand.mtime_ns
            self.fail(job, size, mtime, out.reason, out.detail)
            return
        if job.version is None:
            version = (out.size, out.mtime_ns)
            seen = (job.cand.size, job.cand.mtime_ns)  # looked up at submit already
            if version != seen and self.writer.lookup.known([(job.cand.path, *version)]):
                self.rowmap.release(task.rows)
                job.skipped = True
                job.finish()
                return
            job.version, job.pages_total = version, out.pages_total
            job.content_hash = out.content_hash or ""
            job.grown_from = job.next_page = out.prefix
        if out.meta_warning and task.first_page == 0:
            path, why = job.cand.path, out.meta_warning
            throttle.warning("file.metadata_unreadable", path=path, detail=why)
        if self.debug:
            overview, mask = out.skipped or (0, 0)
            self.log.debug(
                "file.decoded",
                path=job.cand.path,
                pages=len(out.pages),
                first_page=task.first_page,
                pages_total=out.pages_total,
                overview_pages=overview,
                mask_pages=mask,
                decode_ms=round(out.decode_ms, 2),
            )
        if not out.pages:
            self.rowmap.release(task.rows)
            if job.grown_from and job.next_page >= job.pages_total:
                job.finish()  # every page is a committed one: the new version adds no row
                return
            self.fail(job, *job.version, "corrupt", f"page {job.next_page} yielded no image")
            return
        self.rowmap.end_task(task.rows, job, out.pages)
        job.next_page += len(out.pages)
        if job.next_page < job.pages_total:
            self.dispatcher.resume_first(job)  # finish started files first
        else:
            job.finish()

    def _dataset_failure(self, out: Failure) -> None:
        if self.dataset_error is not None:
            return
        path = self.writer.store.sink_path
        if out.reason == "dataset_full":
            self.dataset_error = DatasetFullError(path, out.detail)
        else:
            self.dataset_error = DatasetIOError(path, f"{out.detail}; not retried")

    def lost(self, lo: Lost) -> None:
        job, task = self.dispatcher.take(lo.task.task_id)
        self.rowmap.release(task.rows)
        if job.batch.aborted:
            return
        job.attempts += 1
        throttle.warning(
            "worker.restarted", by="reason", reason=lo.reason, path=job.cand.path, detail=lo.detail
        )
        if lo.reason == "decoder_crash" and job.attempts < MAX_CRASH_ATTEMPTS:
            self.dispatcher.resume_first(job)
            return
        size, mtime = job.version or _stat_version(job.cand.path)
        self.fail(job, size, mtime, lo.reason, lo.detail)

    def fail(self, job: Job, size: int, mtime_ns: int, reason: str, detail: str) -> None:
        """Record the failure; the rows the file already had in its batch become holes."""
        job.failure = FailureRecord(job.cand.path, size, mtime_ns, reason, detail, now())
        job.finish()
        self.rowmap.take_back(job)
        # A flood of one reason (20,000 empty files) is a few lines and a count.
        path = job.cand.path
        throttle.warning("file.failed", by="reason", path=path, reason=reason, detail=detail)


def _stat_version(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return (-1, -1)
    return st.st_size, st.st_mtime_ns
