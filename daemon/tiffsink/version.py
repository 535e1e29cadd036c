"""tiffsink's version, a leaf module: anything may import it without importing tiffsink's
stages (the package `__init__` and the dataset's meta both read it from here)."""

from __future__ import annotations

import functools


@functools.cache
def version() -> str:
    """The installed version, read on first use: importing importlib.metadata costs about
    50 ms, which every worker process would pay at spawn."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("tiffsink")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0.0.0+src"
