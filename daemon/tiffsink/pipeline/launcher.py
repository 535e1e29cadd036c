"""Where worker processes start from: a fork server that imported their modules once.

Spawning a worker costs a fresh interpreter and its imports (numpy, OpenCV, tifffile,
the decoders: about 0.3 s of CPU each, on the cores the work needs). A fork server pays
that once, and then forks each worker ready in milliseconds; it is itself a fresh
interpreter, so a worker inherits nothing of the supervisor's (no threads, no locks, no
open dataset), as with spawn. `start_early` starts it before the caller's own imports,
listing and dataset opening, which it then runs beside. This module imports nothing
heavy, so that the caller can start it first.
"""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.context import ForkServerContext

WORKER_MODULES = ["tiffsink.pipeline.worker"]  # what the fork server imports, once


def worker_context() -> ForkServerContext:
    """The multiprocessing context workers are started with."""
    ctx: ForkServerContext = mp.get_context("forkserver")
    ctx.set_forkserver_preload(WORKER_MODULES)
    return ctx


def start_early() -> None:
    """Start the fork server now (once per process), without waiting for its imports."""
    from multiprocessing import forkserver

    worker_context()
    forkserver.ensure_running()
