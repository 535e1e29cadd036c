"""The worker pool, supervisor side: the worker processes and their pipes.

Each worker has its own pipe; tasks go to a worker with room in its queue, several per
message (a bundle, answered by one message), so that small files do not cost a message
and a wake-up each. A worker writes the id of each task it starts into its heartbeat in
shared memory; one that dies, or shows no progress for `timeout_s`, is killed and
replaced, and the task it was on is reported to the caller as a crash or a timeout. The
other tasks it held are sent again (one finished but unanswered rewrites its rows).
A worker that dies before it is ready held no file's blame: its slot is started again
with backoff (`starts.py`) and its tasks go to the other workers, or wait in a backlog.
Workers map the arena through a descriptor passed at spawn, so a removed /dev/shm file
does not stop replacements from starting. Workers fork from a server process that
imported their modules once (`launcher.py`), so a worker is ready in milliseconds, not
after its own imports. The pool decides nothing about files: it runs the tasks the
state machine sends and reports what became of each.
"""

from __future__ import annotations

import contextlib
import math
import select
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import structlog

from ..config import ImageSpec, MetadataConfig
from ..dataset.formats.sink import SinkSpec
from ..decode.outcome import Outcome
from ..testing import faults
from .arena import Arena, SharedFd
from .launcher import worker_context
from .messages import READY, Lost, Task
from .starts import StartRetry
from .worker import worker_main

log = structlog.get_logger("tiffsink")

BUNDLE = 32  # tasks per message: one send and one answer for several files
QUEUE_DEPTH = 2 * BUNDLE  # tasks per worker: a bundle is already in its pipe when one ends


@dataclass
class _Handle:
    """One worker: its process, its pipe, and the tasks given to it, oldest first."""

    proc: BaseProcess
    conn: Connection
    index: int  # its heartbeat in the arena
    queue: deque[Task] = field(default_factory=deque)  # unanswered, oldest first
    outbox: list[Task] = field(default_factory=list)  # queued, not sent yet
    beat: int = 0  # the task id its heartbeat showed last
    progress_at: float = 0.0  # when it last started a task, answered, or was given work
    ready: bool = False  # it sent READY: a death from now on is about the task it was on

    def send_due(self) -> None:
        """Send queued tasks, BUNDLE per message. A short bundle waits while this worker
        still holds a full one unanswered: sent at once, short bundles would be answered
        short and keep every later message short (a message and a wake-up cost as much
        as a small file's decode)."""
        while self.outbox and (
            len(self.outbox) >= BUNDLE or len(self.queue) - len(self.outbox) < BUNDLE
        ):
            bundle, self.outbox = self.outbox[:BUNDLE], self.outbox[BUNDLE:]
            try:
                # Plain tuples: a NamedTuple pickles through Python-level calls, 8x slower,
                # and this is per file.
                self.conn.send([tuple(t) for t in bundle])
            except OSError:
                self.outbox = []  # it died: its sentinel reports it, its queue is resent


class Pool:
    """The worker processes (spawned, one pipe each) and the heartbeat arena they share.

    Lives in the supervisor's main thread. `submit` sends a task to the least busy worker;
    `poll` collects results and replaces workers that died or overran `timeout_s`.
    """

    def __init__(
        self,
        spec: ImageSpec,
        workers: int,
        timeout_s: float,
        sink: SinkSpec,
        metadata: MetadataConfig | None = None,
    ):
        self.spec, self.timeout_s = spec, timeout_s
        self.metadata = metadata
        self.sink = sink  # where and how workers write pending rows
        self.ctx = worker_context()
        self.arena = Arena(workers)
        self.handles: list[_Handle] = []  # live worker processes; a failing slot has none
        self.starts = StartRetry()
        self.backlog: deque[Task] = deque()  # tasks no live worker had room for
        self._poller = select.poll()
        self._by_fd: dict[int, tuple[str, _Handle]] = {}
        try:
            for i in range(workers):
                self._start(i)
        except BaseException:
            self.close()
            raise

    def _spawn(self, index: int) -> _Handle:
        ours, theirs = self.ctx.Pipe()
        self.arena.reset_beat(index)
        arena = SharedFd(self.arena.fd)
        proc = self.ctx.Process(
            target=worker_main,
            args=(theirs, arena, self.spec, self.sink, self.metadata, index, faults.armed()),
            daemon=True,
            name="tiffsink-worker",
        )
        try:
            proc.start()
        finally:
            theirs.close()
        h = _Handle(proc, ours, index)
        self._watch(h)
        return h

    def _start(self, index: int) -> None:
        """Start slot `index`'s process; one that cannot even be created (EMFILE, ENOMEM,
        EAGAIN) is a failed start, tried again later like a death before READY."""
        try:
            h = self._spawn(index)
        except OSError as e:
            self.starts.failed(index, f"cannot create a worker process: {e}")
            return
        self.starts.starting(index)
        self.handles.append(h)

    @property
    def capacity(self) -> int:
        """How many more tasks the workers' queues accept now."""
        return sum(QUEUE_DEPTH - len(h.queue) for h in self.handles) - len(self.backlog)

    def submit(self, task: Task) -> None:
        """Queue a task on the least busy worker; `flush` (or the next `poll`) sends it."""
        if not self._place(task):
            raise RuntimeError("no worker has room; check capacity first")

    def _place(self, task: Task) -> bool:
        """Queue on the least busy live worker with room; False when there is none."""
        if not self.handles:
            return False
        h = min(self.handles, key=lambda h: len(h.queue))
        if len(h.queue) >= QUEUE_DEPTH:
            return False
        if not h.queue:
            h.progress_at = time.monotonic()
        h.queue.append(task)
        h.outbox.append(task)
        return True

    def flush(self) -> None:
        """Send every worker the bundles that are due (after the backlog found room)."""
        while self.backlog and self._place(self.backlog[0]):
            self.backlog.popleft()
        for h in self.handles:
            h.send_due()

    def wake_on(self, fd: int) -> None:
        """Also end a poll when `fd` turns readable (it yields no answers)."""
        self._poller.register(fd, select.POLLIN)

    def _watch(self, h: _Handle) -> None:
        """Register a worker's pipe and exit sentinel with the one long-lived poller (a new
        selector per poll cost more than the rest of the per-file work)."""
        for kind, fd in (("conn", h.conn.fileno()), ("proc", h.proc.sentinel)):
            self._poller.register(fd, select.POLLIN)
            self._by_fd[fd] = (kind, h)

    def _unwatch(self, h: _Handle) -> None:
        for fd in (h.conn.fileno(), h.proc.sentinel):
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._poller.unregister(fd)
            self._by_fd.pop(fd, None)

    def _culprit(self, h: _Handle) -> int | None:
        """Where in its queue is the task a dead or hung worker was on (its heartbeat);
        None when it was on none of them (it died idle, or between tasks)."""
        beat = self.arena.beat(h.index)
        for i, t in enumerate(h.queue):
            if t.task_id == beat:
                return i
        return None

    def _replace(self, h: _Handle, kill: bool, culprit: int | None) -> list[Task]:
        """Kill (if asked) and respawn a worker; returns its tasks but the culprit."""
        queued = [t for i, t in enumerate(self._retire(h, kill)) if i != culprit]
        self._start(h.index)
        return queued

    def _retire(self, h: _Handle, kill: bool) -> list[Task]:
        """Kill (if asked) and reap a worker, forget its pipe; returns the tasks it held."""
        if kill and h.proc.is_alive():
            h.proc.kill()
        h.proc.join(5)
        if h.proc.is_alive():
            # Its reserved rows are about to be reused: it must not write any more, so
            # wait for it (stuck in the kernel, e.g. on a hung mount) rather than race it.
            log.error("worker.unkillable", pid=h.proc.pid, action="waiting for it to exit")
            h.proc.join()
        self._unwatch(h)
        with contextlib.suppress(OSError):
            h.conn.close()
        self.handles.remove(h)
        return list(h.queue)

    def _start_failed(self, h: _Handle, detail: str) -> list[Task]:
        """A worker died (or was killed) before READY: none of its tasks is to blame; its
        slot is started again after a backoff."""
        queued = self._retire(h, kill=True)
        self.starts.failed(h.index, detail)
        return queued

    def poll(self, timeout_s: float) -> tuple[list[tuple[Task, Outcome]], list[Lost]]:
        """Wait up to `timeout_s` for results; returns (finished, lost) and resubmits the
        innocent tasks that sat behind a lost one."""
        self.flush()
        done: list[tuple[Task, Outcome]] = []
        lost: list[Lost] = []
        now = time.monotonic()
        busy = [h for h in self.handles if h.queue]
        wait_s = timeout_s
        for h in busy:
            self._progress(h, now)
            wait_s = min(wait_s, max(0.0, h.progress_at + self.timeout_s - now))
        retry_at = self.starts.next_at()
        if retry_at is not None:
            wait_s = min(wait_s, max(0.0, retry_at - now))
        events = self._poller.poll(math.ceil(wait_s * 1000))
        ready = [self._by_fd[fd] for fd, _ in events if fd in self._by_fd]
        requeue: list[Task] = []
        for kind, h in ready:
            if kind == "conn":
                # One answer per readiness: the poller is level-triggered, so a second one
                # waiting is reported at once by the next poll (Connection.poll would build a
                # new selector per call).
                try:
                    outs = h.conn.recv()
                    if not h.ready and outs == READY:
                        h.ready = True
                        self.starts.ready(h.index)
                    else:
                        for out in outs:
                            done.append((h.queue.popleft(), out))
                        h.progress_at = time.monotonic()
                except (EOFError, OSError):
                    pass  # the sentinel below reports the death
        for kind, h in ready:
            if kind == "proc":
                if h not in self.handles or h.proc.is_alive():
                    continue
                code = h.proc.exitcode
                if not h.ready:
                    requeue += self._start_failed(
                        h, f"a worker process exited with code {code} before it was ready"
                    )
                    continue
                culprit = self._culprit(h)
                if culprit is not None:
                    detail = f"worker exited with code {code} while decoding"
                    if code is not None and code < 0:
                        detail = f"worker killed by signal {-code} while decoding"
                    lost.append(Lost(h.queue[culprit], "decoder_crash", detail))
                requeue += self._replace(h, kill=False, culprit=culprit)
        now = time.monotonic()
        for h in list(self.handles):
            if h.queue:
                self._progress(h, now)
            if h.queue and now - h.progress_at > self.timeout_s and not h.ready:
                detail = f"a worker process was not ready after {self.timeout_s:g} s; killed"
                requeue += self._start_failed(h, detail)
            elif h.queue and now - h.progress_at > self.timeout_s:
                culprit = self._culprit(h)
                detail = f"no result after {self.timeout_s:g} s; worker killed"
                if culprit is not None:
                    lost.append(Lost(h.queue[culprit], "timeout", detail))
                else:  # stuck outside any task: nobody's file to blame, all are sent again
                    log.warning("worker.restarted", reason="timeout", path=None, detail=detail)
                requeue += self._replace(h, kill=True, culprit=culprit)
        for index in self.starts.due(now):
            self._start(index)
        self.backlog.extendleft(reversed(requeue))  # first in line: their batches wait
        self.flush()
        return done, lost

    def _progress(self, h: _Handle, now: float) -> None:
        """A new task id in its heartbeat is progress: its timeout counts from there."""
        beat = self.arena.beat(h.index)
        if beat != h.beat:
            h.beat, h.progress_at = beat, now

    def close(self) -> None:
        for h in self.handles:
            with contextlib.suppress(OSError, BrokenPipeError):
                h.conn.send(None)
        deadline = time.monotonic() + 5
        for h in self.handles:
            h.proc.join(max(0.0, deadline - time.monotonic()))
            if h.proc.is_alive():
                h.proc.kill()
                h.proc.join(1)
            self._unwatch(h)
            with contextlib.suppress(OSError):
                h.conn.close()
        self.handles = []
        self.backlog.clear()
        self.arena.close()
