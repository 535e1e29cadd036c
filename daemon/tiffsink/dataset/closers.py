"""The handles a writer opened, closed newest first, each failure logged and not raised:
a close that fails must not hide the error that made us close."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog

from .fsio import os_error_name

log = structlog.get_logger("tiffsink")


class Closers:
    def __init__(self, where: Path) -> None:
        self.where = where
        self._stack: list[Callable[[], None]] = []

    def push(self, closer: Callable[[], None]) -> None:
        self._stack.append(closer)

    def close_all(self) -> None:
        while self._stack:
            closer = self._stack.pop()
            try:
                closer()
            except Exception as e:
                log.warning(
                    "dataset.close_failed",
                    path=str(self.where),
                    step="close handle",
                    detail=os_error_name(e),
                )
