"""Repeated log events of one kind, aggregated: a flood costs a few lines, not one each.

20,000 empty files used to write 20,000 `file.failed` lines; about 10,000 lines in 30 s
use up journald's default budget, after which it drops lines, the useful ones included.
Per kind (an event, and optionally the value of one of its keys, e.g. `reason`), the
first `burst` events of each interval are logged in full; the rest are counted, and when
the interval ends one summary line carries the count (`repeated`), under the same event
name and kind. So the journal holds at most `burst + 1` lines per kind and interval.
Per-file detail is never lost: the index records every failure (`tiffsink failures`).

A timer thread writes a summary when its interval ends, so a flood that stops is still
reported; what is left at exit is written then. Any thread may log through it.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

BURST = 10  # events of one kind logged in full per interval
INTERVAL_S = 60.0
MAX_KINDS = 256  # distinct kinds tracked; beyond that, new kinds share one count


@dataclass
class _Kind:
    ends: float  # monotonic end of the current interval
    logged: int = 0
    suppressed: int = 0


class LogThrottle:
    """Logs through `logger`; `warning`/`error`/`debug` as structlog's, plus the kind."""

    def __init__(
        self,
        logger: Any = None,
        burst: int = BURST,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        timer: bool = True,
    ) -> None:
        self.log = logger if logger is not None else structlog.get_logger("tiffsink")
        self.burst, self.interval_s, self.clock = burst, interval_s, clock
        self._timer_on = timer
        self._kinds: dict[tuple[str, str, str, Any], _Kind] = {}
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def warning(self, event: str, by: str | None = None, **kw: Any) -> None:
        self.emit("warning", event, by, **kw)

    def error(self, event: str, by: str | None = None, **kw: Any) -> None:
        self.emit("error", event, by, **kw)

    def debug(self, event: str, by: str | None = None, **kw: Any) -> None:
        self.emit("debug", event, by, **kw)

    def emit(self, level: str, event: str, by: str | None, **kw: Any) -> None:
        """Log `event` in full, or count it; `by` names the key whose value is the kind."""
        key = (level, event, by or "", kw.get(by) if by else None)
        now = self.clock()
        summary = None
        with self._lock:
            k = self._kinds.get(key)
            if k is None and len(self._kinds) >= MAX_KINDS:
                key = (level, event, "", None)  # too many kinds: one shared count
                k = self._kinds.get(key)
            if k is not None and now >= k.ends:
                summary = self._close(key, k)
                k = None
            if k is None:
                k = self._kinds[key] = _Kind(now + self.interval_s)
            full = k.logged < self.burst
            if full:
                k.logged += 1
            else:
                k.suppressed += 1
                self._arm(k.ends - now)
        if summary is not None:
            self._write(*summary)
        if full:
            getattr(self.log, level)(event, **kw)

    def flush(self, final: bool = False) -> None:
        """Write the summary of every interval that has ended (every one, if `final`)."""
        now = self.clock()
        out = []
        with self._lock:
            for key, k in list(self._kinds.items()):
                if final or now >= k.ends:
                    del self._kinds[key]
                    if (s := self._close(key, k)) is not None:
                        out.append(s)
            self._timer = None
            if self._kinds and not final:
                pending = [k.ends - now for k in self._kinds.values() if k.suppressed]
                if pending:
                    self._arm(min(pending))
        for s in out:
            self._write(*s)

    def _close(self, key: tuple[str, str, str, Any], k: _Kind) -> tuple[Any, ...] | None:
        if not k.suppressed:
            return None
        took = self.interval_s - max(0.0, k.ends - self.clock())
        return key, k.suppressed, round(took, 1)

    def _write(self, key: tuple[str, str, str, Any], n: int, over_s: float) -> None:
        level, event, by, value = key
        kind = {by: value} if by else {}
        getattr(self.log, level)(event, **kind, repeated=n, over_s=over_s)

    def _arm(self, delay_s: float) -> None:
        """One timer at a time, for the earliest interval with a count to report."""
        if not self._timer_on or self._timer is not None:
            return
        self._timer = threading.Timer(max(0.0, delay_s) + 0.01, self.flush)
        self._timer.daemon = True
        self._timer.name = "tiffsink-logthrottle"
        self._timer.start()


throttle = LogThrottle()  # the process's one throttle, shared by every call site
atexit.register(throttle.flush, True)
