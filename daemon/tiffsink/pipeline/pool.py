"""The worker pool, supervisor side: the worker processes and their pipes.

Each worker has its own pipe; a task is sent only to a worker with room in its queue,
and a worker that dies or overruns `timeout_s` is killed and replaced, and the task it
was on is reported to the caller as a crash or a timeout.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import select
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import structlog

from ..config import ImageSpec, MetadataConfig
from ..dataset.formats.sink import SinkSpec
from ..errors import WorkerStartError
from .arena import Arena
from .messages import READY, Failure, Result, Task
from .worker import worker_main

QUEUE_DEPTH = 2  # tasks per worker: the next file is already in its pipe when one ends


@dataclass
class _Handle:
    """One worker: its process, its pipe, and the tasks sent to it, oldest first."""

    proc: BaseProcess
    conn: Connection
    queue: deque[Task] = field(default_factory=deque)
    head_started: float = 0.0
    ready: bool = False  # it sent READY: a death from now on is about the task it was on


@dataclass(frozen=True)
class Lost:
    """A task whose worker died or hung; `reason` is decoder_crash or timeout."""

    task: Task
    reason: str
    detail: str


class Pool:
    """The worker processes (spawned, one pipe each) and the slot arena they share.

    Lives in the supervisor's main thread. `submit` sends a task to the least busy worker;
    `poll` collects results and replaces workers that died or overran `timeout_s`.
    """

    def __init__(
        self,
        spec: ImageSpec,
        workers: int,
        slots_per_worker: int,
        timeout_s: float,
        sink: SinkSpec | None = None,
        metadata: MetadataConfig | None = None,
    ):
        self.spec, self.timeout_s = spec, timeout_s
        self.metadata = metadata
        self.sink = sink  # where and how workers write pending rows; None: slots only
        self.ctx = mp.get_context("spawn")
        self.arena = Arena(spec, workers * slots_per_worker)
        self.handles: list[_Handle] = []
        self._poller = select.poll()
        self._by_fd: dict[int, tuple[str, _Handle]] = {}
        try:
            for _ in range(workers):
                self.handles.append(self._spawn())
        except BaseException:
            self.close()
            raise

    def _spawn(self) -> _Handle:
        ours, theirs = self.ctx.Pipe()
        proc = self.ctx.Process(
            target=worker_main,
            args=(theirs, str(self.arena.path), self.arena.n, self.spec, self.sink, self.metadata),
            daemon=True,
            name="tiffsink-worker",
        )
        proc.start()
        theirs.close()
        h = _Handle(proc, ours)
        self._watch(h)
        return h

    @property
    def capacity(self) -> int:
        """How many more tasks the workers' queues accept now."""
        return sum(QUEUE_DEPTH - len(h.queue) for h in self.handles)

    def submit(self, task: Task) -> None:
        h = min(self.handles, key=lambda h: len(h.queue))
        if len(h.queue) >= QUEUE_DEPTH:
            raise RuntimeError("no worker has room; check capacity first")
        if not h.queue:
            h.head_started = time.monotonic()
        h.queue.append(task)
        h.conn.send(task)

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

    def _replace(self, h: _Handle, kill: bool) -> list[Task]:
        """Kill (if asked) and respawn a worker; returns the tasks queued behind its head."""
        if kill and h.proc.is_alive():
            h.proc.kill()
        h.proc.join(5)
        if h.proc.is_alive():
            # Its reserved rows are about to be reused: it must not write any more, so
            # wait for it (stuck in the kernel, e.g. on a hung mount) rather than race it.
            structlog.get_logger("tiffsink").error(
                "worker.unkillable", pid=h.proc.pid, action="waiting for it to exit"
            )
            h.proc.join()
        self._unwatch(h)
        with contextlib.suppress(OSError):
            h.conn.close()
        queued = list(h.queue)[1:]
        self.handles[self.handles.index(h)] = self._spawn()
        return queued

    def poll(self, timeout_s: float) -> tuple[list[tuple[Task, Result | Failure]], list[Lost]]:
        """Wait up to `timeout_s` for results; returns (finished, lost) and resubmits the
        innocent tasks that sat behind a lost one."""
        done: list[tuple[Task, Result | Failure]] = []
        lost: list[Lost] = []
        now = time.monotonic()
        busy = [h for h in self.handles if h.queue]
        wait_s = timeout_s
        for h in busy:
            wait_s = min(wait_s, max(0.0, h.head_started + self.timeout_s - now))
        events = self._poller.poll(math.ceil(wait_s * 1000))
        ready = [self._by_fd[fd] for fd, _ in events if fd in self._by_fd]
        requeue: list[Task] = []
        for kind, h in ready:
            if kind == "conn":
                # One answer per readiness: the poller is level-triggered, so a second one
                # waiting is reported at once by the next poll (Connection.poll would build a
                # new selector per call).
                try:
                    out = h.conn.recv()
                    if not h.ready and out == READY:
                        h.ready = True
                    elif h.queue:
                        done.append((h.queue.popleft(), out))
                        h.head_started = time.monotonic()
                except (EOFError, OSError):
                    pass  # the sentinel below reports the death
        for kind, h in ready:
            if kind == "proc":
                if h not in self.handles or h.proc.is_alive():
                    continue
                code = h.proc.exitcode
                if not h.ready:
                    raise WorkerStartError(
                        None,
                        f"a worker process exited with code {code} before it was ready; "
                        "its error is in the log above. Every file would fail on it, so "
                        "tiffsink stops (nothing was recorded as failed)",
                    )
                if h.queue:
                    detail = f"worker exited with code {code} while decoding"
                    if code is not None and code < 0:
                        detail = f"worker killed by signal {-code} while decoding"
                    lost.append(Lost(h.queue[0], "decoder_crash", detail))
                requeue += self._replace(h, kill=False)
        now = time.monotonic()
        for h in list(self.handles):
            if h.queue and now - h.head_started > self.timeout_s:
                detail = f"no result after {self.timeout_s:g} s; worker killed"
                lost.append(Lost(h.queue[0], "timeout", detail))
                requeue += self._replace(h, kill=True)
        for t in requeue:
            self.submit(t)
        return done, lost

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
        self.arena.close()
