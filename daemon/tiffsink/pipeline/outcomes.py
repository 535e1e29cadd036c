"""What a worker's answer means for its file: rows written, a retry, or a failure.

A result's pages are already in their reserved rows; the first chunk of a file fixes its
version (and may find it already in the index: a skip, its rows become holes; or find
that it begins with the file's committed pages: only the pages after them are rows); a
crash is retried once, since the OOM killer may have picked the worker for another's
sake; everything else is recorded as a failure, and the rows the file already had become
holes. A worker that could not write its rows reports the dataset's error, which the
state machine hands out after the round of answers.

Part of the state machine: these functions change only the `Bookkeeping` they are
given (and log), never anything outside it.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from ..dataset.lookup import Version
from ..dataset.records import FailureRecord
from ..decode.outcome import DATASET_REASONS, Outcome
from ..logthrottle import throttle
from .bookkeeping import Bookkeeping
from .instructions import RowWriteFailed, Send
from .jobs import Job
from .messages import Lost

MAX_CRASH_ATTEMPTS = 2  # a crash may be the machine's fault (OOM killer): try once more


def finish(
    st: Bookkeeping, job: Job, send: Send, out: Outcome, known: AbstractSet[Version]
) -> None:
    """A task's answer; `known`: versions the index holds, of those the shell was asked to
    look up (`versions_to_check`)."""
    rows = st.rows
    if job.batch.aborted:
        rows.release(send.rows)
        return
    if out.failed:
        rows.release(send.rows)
        if out.reason in DATASET_REASONS:
            if st.row_error is None:
                st.row_error = RowWriteFailed(out.reason == "dataset_full", out.detail)
            st.todo.appendleft(job)  # not the file's fault
            return
        size, mtime = out.size, out.mtime_ns
        if size < 0 and job.cand.size is not None and job.cand.mtime_ns is not None:
            # Refused before it was opened (FIFO, symlink): record the version the
            # feeder saw, so a rescan finds it known instead of retrying it forever.
            size, mtime = job.cand.size, job.cand.mtime_ns
        fail(st, job, size, mtime, out.reason, out.detail)
        return
    if job.version is None:
        version = (out.size, out.mtime_ns)
        seen = (job.cand.size, job.cand.mtime_ns)  # looked up at submit already
        if version != seen and (job.cand.path, *version) in known:
            rows.release(send.rows)
            job.skipped = True
            job.finish()
            return
        job.version, job.pages_total = version, out.pages_total
        job.content_hash = out.content_hash or ""
        job.grown_from = job.next_page = out.prefix
    if out.warning and send.first_page == 0:
        path, why = job.cand.path, out.warning
        throttle.warning("file.metadata_unreadable", path=path, detail=why)
    if st.debug:
        overview, mask = out.skipped or (0, 0)
        st.log.debug(
            "file.decoded",
            path=job.cand.path,
            pages=len(out.pages),
            first_page=send.first_page,
            pages_total=out.pages_total,
            overview_pages=overview,
            mask_pages=mask,
            decode_ms=round(out.decode_ms, 2),
        )
    if not out.pages:
        rows.release(send.rows)
        if job.grown_from and job.next_page >= job.pages_total:
            job.finish()  # every page is a committed one: the new version adds no row
            return
        fail(st, job, *job.version, "corrupt", f"page {job.next_page} yielded no image")
        return
    rows.end_task(send.rows, job, out.pages)
    job.next_page += len(out.pages)
    if job.next_page < job.pages_total:
        st.todo.appendleft(job)  # finish started files first
    else:
        job.finish()


def lost(st: Bookkeeping, job: Job, send: Send, lo: Lost, on_disk: tuple[int, int]) -> None:
    """A task whose worker crashed or hung; `on_disk`: the file's version if no chunk read
    it yet, for the failure record."""
    st.rows.release(send.rows)
    if job.batch.aborted:
        return
    job.attempts += 1
    throttle.warning(
        "worker.restarted", by="reason", reason=lo.reason, path=job.cand.path, detail=lo.detail
    )
    if lo.reason == "decoder_crash" and job.attempts < MAX_CRASH_ATTEMPTS:
        st.todo.appendleft(job)
        return
    size, mtime = job.version or on_disk
    fail(st, job, size, mtime, lo.reason, lo.detail)


def fail(st: Bookkeeping, job: Job, size: int, mtime_ns: int, reason: str, detail: str) -> None:
    """Record the failure; the rows the file already had in its batch become holes."""
    job.failure = FailureRecord(job.cand.path, size, mtime_ns, reason, detail, st.wall())
    job.finish()
    st.rows.take_back(job)
    # A flood of one reason (20,000 empty files) is a few lines and a count.
    path = job.cand.path
    throttle.warning("file.failed", by="reason", path=path, reason=reason, detail=detail)
