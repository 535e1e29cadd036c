"""Stop requests by signal, one scheme for `tiffsink run` and `tiffsink ingest`.

The first SIGTERM or SIGINT only sets a flag: the loop finishes the batch in flight and
returns. A second one ends the process at once (recovery cleans up at the next open).
`tiffsink run` also takes SIGHUP this way (its default action would end the process
silently, and systemd counts a death by SIGHUP as a clean exit, never restarted): the
daemon drains and exits 75, and systemd starts it again with the config read anew.
Handlers do nothing else: logging inside one can deadlock on the logger's lock if the
signal arrived while the main thread held it. The previous handlers are restored on exit.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)
EX_INTERRUPTED = 130  # what a backfill stopped by a signal exits with (128 + SIGINT)
WITH_HANGUP = (*SIGNALS, signal.SIGHUP)


def _exit_now(code: int, message: str) -> None:
    os.write(2, message.encode() + b"\n")
    os._exit(code)


class StopSignals:
    """Context manager: `requested` once a stop signal arrived, `name` says which."""

    def __init__(
        self,
        second_exit_code: int,
        message: str,
        exit_now: Callable[[int, str], None] = _exit_now,
        signals: tuple[signal.Signals, ...] = SIGNALS,
    ) -> None:
        self.second_exit_code, self.message = second_exit_code, message
        self.exit_now = exit_now
        self.signals = signals
        self.count = 0
        self.name = ""
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.count > 0

    def handle(self, signum: int, frame: FrameType | None = None) -> None:
        """The handler: count, remember the first one's name, and on the second signal
        exit at once."""
        self.count += 1
        if self.count == 1:
            self.name = signal.Signals(signum).name
        if self.count > 1:
            self.exit_now(self.second_exit_code, self.message)

    def __enter__(self) -> StopSignals:
        for s in self.signals:
            self._previous[s] = signal.signal(s, self.handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for s, old in self._previous.items():
            signal.signal(s, old)
        self._previous.clear()
