"""The worker process: decode the files it is sent and write their rows into the dataset.

Tasks come in bundles (several files per message, one answer per bundle). A worker
decodes one task at a time into its own scratch rows, then writes each page into the
pending slot of the dataset row the supervisor reserved for it (npy and uncompressed
zarr: the row itself; compressed zarr: the row's encoded chunk). Those rows are past
the committed ones, so they stay invisible: only the supervisor fsyncs and commits them
through the index, and a row a worker left torn (killed mid-write) is never committed.
Answers carry metadata only (pixels never travel through the pipe). Before each task the
worker writes the task's id into its heartbeat in the shared-memory arena: if it crashes
or hangs, the supervisor kills it, records the file it was on, and starts another.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import sys
import traceback
from multiprocessing.connection import Connection

import numpy as np

from ..config import ImageSpec, MetadataConfig
from ..dataset.formats import RowSink, SinkSpec
from ..decode import Decoder
from ..decode.metadata import MetadataReader
from ..decode.outcome import Outcome, decode_call, write_reason
from ..testing import faults
from .arena import BEAT, beat_offset
from .messages import READY, Task


def _tune_malloc() -> None:
    """Keep big decode buffers on the heap instead of fresh mmaps per file.

    glibc hands out buffers over 128 KiB with mmap and returns them on free, so every
    decode page-faults its whole output again (measured 13 ms vs 2.5 ms per 8 MiB frame).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
    libc.mallopt(m_trim_threshold, 1 << 30)


def write_rows(out: Outcome, task: Task, pages: list[np.ndarray], sink: RowSink) -> Outcome:
    """Write an outcome's pages into their reserved pending slots; a write error becomes a
    failure of the dataset's (disk full pauses intake, other errors stop it)."""
    if out.failed:
        return out
    try:
        for i in range(len(out.pages)):
            payload = sink.payload(pages[i])
            faults.before_row_write(task.path, sink.write, task.offsets[i], len(payload))
            sink.write(task.offsets[i], payload)
    except OSError as e:
        return out.failure(write_reason(e), f"writing row: {e}")
    return out


def run_task(decoder: Decoder, task: Task, outs: list[np.ndarray], meta: MetadataReader) -> Outcome:
    """Decode one task, as a Dask task decodes its files (`decode_call`)."""
    return decode_call(
        decoder, meta, task.task_id, task.path, task.root, task.first_page, outs,
        task.version, task.prefix,
    )  # fmt: skip


class Scratch:
    """A worker's own rows to decode into, before each page is written to its dataset row;
    grown to the largest task (at most `slots_per_worker` / 2 pages)."""

    def __init__(self, spec: ImageSpec) -> None:
        self.spec = spec
        self.rows = np.empty((0, *spec.row_shape), spec.dtype)

    def take(self, n: int) -> list[np.ndarray]:
        if len(self.rows) < n:
            self.rows = np.empty((n, *self.spec.row_shape), self.spec.dtype)
        return [self.rows[i] for i in range(n)]


def worker_main(
    conn: Connection,
    arena: int,
    spec: ImageSpec,
    sink_spec: SinkSpec,
    metadata: MetadataConfig | None = None,
    index: int = 0,
    armed: str = "",
) -> None:
    """Entry point of a spawned worker: serve bundles of tasks until the pipe closes.

    A bundle is a list of tasks answered by one list of outcomes, in order (one message
    each way for several files). Before each task the worker writes its id into its
    heartbeat, so the supervisor knows which task it died or hung on.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    faults.arm(armed)
    _tune_malloc()
    import cv2

    cv2.setNumThreads(1)  # one process per core already; OpenCV's threads only contend
    # The supervisor passes its arena's descriptor (SharedFd), not its name.
    try:
        mm = mmap.mmap(arena, os.fstat(arena).st_size)
    finally:
        os.close(arena)
    beat_at = beat_offset(index)
    decoder = Decoder(spec)
    meta = MetadataReader(metadata or MetadataConfig())
    sink = sink_spec.open()
    scratch = Scratch(spec)
    faults.at_worker_start()
    conn.send(READY)
    while True:
        try:
            bundle = conn.recv()
        except (EOFError, OSError):
            return
        if bundle is None:
            return
        outs: list[Outcome] = []
        try:
            for fields in bundle:
                task = Task(*fields)
                BEAT.pack_into(mm, beat_at, task.task_id)
                pages = scratch.take(len(task.rows))
                out = run_task(decoder, task, pages, meta)
                outs.append(write_rows(out, task, pages, sink))
        except BaseException:
            print(traceback.format_exc(), file=sys.stderr)
            raise
        conn.send(outs)
