"""Worker processes that die before they are ready: started again with backoff, within a bound.

A worker that dies before its READY message never touched a file, so none is charged;
the cause is the machine (no memory, no file descriptors, a library gone missing), and
such causes often pass. So its slot is started again after 0.5 s, 1 s, 2 s, ... (at
most RETRY_MAX_S apart), each failure logged as `worker.start_failed` and reported by
`problem` (the daemon turns /healthz unhealthy with it). Only when one slot has failed to
start for GIVE_UP_S without a single success does the run stop, with WorkerStartError
(exit 75: systemd restarts the service, and its own start limit ends a fault that
outlives restarts). Supervisor main thread only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog

from ..errors import WorkerStartError
from ..testing import faults

log = structlog.get_logger("tiffsink")

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
GIVE_UP_S = 120.0  # a slot failing to start this long, with no success, ends the run


@dataclass
class _Failing:
    """One worker slot that has not managed to start since `since`."""

    since: float
    tries: int
    retry_at: float
    detail: str


class StartRetry:
    """Which worker slots are down, when each is tried again, and when to give up."""

    def __init__(self, give_up_s: float | None = None) -> None:
        self.give_up_s = faults.start_give_up_s(GIVE_UP_S if give_up_s is None else give_up_s)
        self.failing: dict[int, _Failing] = {}

    def failed(self, slot: int, detail: str, now: float | None = None) -> None:
        """Slot `slot`'s process died before READY (or could not be created): schedule
        its next start, or raise WorkerStartError once the bound is passed."""
        now = time.monotonic() if now is None else now
        f = self.failing.get(slot)
        if f is None:
            f = self.failing[slot] = _Failing(now, 0, now, detail)
        f.tries += 1
        f.detail = detail
        delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (f.tries - 1))
        f.retry_at = now + delay
        if now - f.since >= self.give_up_s:
            log.error(
                "worker.start_failed",
                worker=slot,
                detail=detail,
                tries=f.tries,
                action=f"giving up after {now - f.since:.0f} s: exit 75",
            )
            raise WorkerStartError(
                None,
                f"worker {slot} could not start for {now - f.since:.0f} s ({f.tries} tries); "
                f"last: {detail}. Every file would fail on it, so tiffsink stops "
                "(nothing was recorded as failed)",
            )
        log.error(
            "worker.start_failed",
            worker=slot,
            detail=detail,
            tries=f.tries,
            action=f"retry in {delay:g} s",
        )

    def ready(self, slot: int) -> None:
        """Slot `slot`'s process sent READY: it is healthy again."""
        f = self.failing.pop(slot, None)
        if f is not None:
            log.info("worker.start_recovered", worker=slot, tries=f.tries)

    def due(self, now: float) -> list[int]:
        """Failing slots whose next start is due now (each is then started again)."""
        return [s for s, f in self.failing.items() if f.retry_at <= now]

    def starting(self, slot: int) -> None:
        """A failing slot's process was started again: not due until it fails again."""
        f = self.failing.get(slot)
        if f is not None:
            f.retry_at = float("inf")

    def next_at(self) -> float | None:
        return min((f.retry_at for f in self.failing.values()), default=None)

    def problem(self) -> str | None:
        """What /healthz says while a slot is failing; None when every worker started."""
        if not self.failing:
            return None
        slot, f = min(self.failing.items())
        return (
            f"worker {slot} failed to start {f.tries} times ({f.detail}); retrying, "
            f"stopping after {self.give_up_s:g} s"
        )
