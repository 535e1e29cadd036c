"""Does the config fit this machine? Rows times slots times workers must fit in memory.

Each key has its own bounds, but their product can still be absurd: `[image]` 65535 x
65535 x 3 float32 was accepted and every good file then failed as `decoder_crash` on a
48 GiB allocation, and `workers.count = 1024` was killed by the OOM killer before READY,
without a line in the log. So at load:
  - a config whose supervisor plus a single worker cannot fit in MEMORY_FRACTION of
    physical memory is refused, and the message gives the bytes;
  - the worker count (0: one per core) is capped at WORKERS_PER_CORE per core and at
    what memory holds, with a warning (Config.warnings, logged once logging is up).
The estimates are deliberately rough and on the safe side: a decoder process with its
libraries loaded (~60 MiB resident here, more while decoding), its decoded rows, and
in the supervisor a compressed zarr's whole shard, rewritten at each commit.
"""

from __future__ import annotations

import os
from dataclasses import replace

from ..errors import ConfigError
from .schema import Config

WORKER_BASE_BYTES = 160 << 20  # a worker process before its rows
SUPERVISOR_BASE_BYTES = 256 << 20  # the daemon itself, its index, HTTP and queues
MEMORY_FRACTION = 0.8  # of physical memory, the rest for the page cache and the system
WORKERS_PER_CORE = 4  # decoding is CPU-bound; more only helps slow (network) inboxes


def physical_memory() -> int:
    """Bytes of RAM (os.sysconf); replaced in tests."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worker_bytes(cfg: Config) -> int:
    """One worker: the process, its slots of decoded rows, and resize/convert scratch."""
    return WORKER_BASE_BYTES + (cfg.workers.slots_per_worker + 2) * cfg.image.row_bytes


def supervisor_bytes(cfg: Config) -> int:
    """The daemon: a few rows it copies, and, where the last shard is rewritten whole at
    every commit, that shard (worst case: rows that do not compress)."""
    st = cfg.dataset.storage
    shard = st.shard_rows if st.rewrites_shards else 0
    return SUPERVISOR_BASE_BYTES + (2 + shard) * cfg.image.row_bytes


def fit_resources(cfg: Config) -> Config:
    """`cfg`, its worker count capped to this machine; ConfigError if nothing fits."""
    mem = physical_memory()
    budget = int(mem * MEMORY_FRACTION)
    sup, per = supervisor_bytes(cfg), worker_bytes(cfg)
    if sup + per > budget:
        raise ConfigError(cfg.source_file, _culprit(cfg, budget), _too_big(cfg, sup, per, mem))
    want = cfg.workers.count or cores()
    n = min(want, WORKERS_PER_CORE * cores(), (budget - sup) // per)
    if n >= want:
        return cfg
    why = (
        f"workers.count: {want} workers capped to {n}: this machine has {cores()} cores "
        f"(at most {WORKERS_PER_CORE} workers each) and {mem} bytes of memory, of which "
        f"{MEMORY_FRACTION:.0%} hold {n} workers of {per} bytes (rows of {cfg.image.row_bytes} "
        f"bytes x (slots_per_worker {cfg.workers.slots_per_worker} + 2), plus the process) "
        f"and the daemon's {sup} bytes"
    )
    return replace(cfg, workers=replace(cfg.workers, count=n), warnings=(*cfg.warnings, why))


def _culprit(cfg: Config, budget: int) -> str:
    """The key to name: the shard, the row itself, or the slots."""
    if supervisor_bytes(cfg) > budget and cfg.dataset.storage.rewrites_shards:
        return "dataset.shard_rows"
    one_slot = replace(cfg, workers=replace(cfg.workers, slots_per_worker=1))
    if supervisor_bytes(cfg) + worker_bytes(one_slot) > budget:
        return "image"
    return "workers.slots_per_worker"


def _too_big(cfg: Config, sup: int, per: int, mem: int) -> str:
    im, w = cfg.image, cfg.workers
    return (
        f"rows of {im.height} x {im.width} x {im.channels} {im.dtype} are {im.row_bytes} "
        f"bytes each; one worker with slots_per_worker = {w.slots_per_worker} needs {per} "
        f"bytes and the daemon {sup} bytes, together more than {MEMORY_FRACTION:.0%} of "
        f"this machine's {mem} bytes of memory; use a smaller [image] size or dtype, "
        "fewer slots_per_worker, or smaller zarr shards"
    )
