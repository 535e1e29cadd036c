"""structlog set-up: JSON lines for journald and files, readable colour on a terminal.

Events are named (`file.ingested`, `batch.committed`, ...) and carry their context as
keys, so `journalctl -o cat | jq 'select(.event=="file.failed")'` is a query, not a grep.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from ..config import Config, LogConfig

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def setup(cfg: LogConfig, stream: TextIO | None = None) -> None:
    """Configure the process-wide logger once, from `[log]`."""
    out = stream or sys.stdout
    fmt = cfg.format
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[cfg.level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def config_warnings(cfg: Config) -> None:
    """What loading the config changed (e.g. a worker count capped to the machine), once
    logging is set up: `config.adjusted` with the key and why."""
    for w in cfg.warnings:
        key, _, detail = w.partition(": ")
        structlog.get_logger("tiffsink").warning("config.adjusted", key=key, detail=detail)
