"""Fault injection for tests: one environment variable, read once, free when unset.

`TIFFSINK_FAULTS` is a comma-separated list of `kind=argument`:
  crash_at=POINT   the process SIGKILLs itself the first time it reaches commit step POINT
                   (one of CRASH_POINTS), as a power cut or kill -9 would;
  segv=NAME        a worker segfaults on a file whose name contains NAME;
  hang=NAME        a worker hangs for good on such a file;
  slow=NAME        a worker takes a second longer over such a file;
  oom=NAME         a worker raises MemoryError on such a file;
  torn_write=NAME  a worker writes part of such a file's first row, then SIGKILLs itself;
  worker_start=exit  every worker exits with code 3 before it is ready (a broken install);
  worker_start=PATH  the same, but only while the file PATH exists (a passing fault);
  start_give_up_s=S  a test's shorter bound on retrying workers that cannot start.
Production code calls `crash_point`, `before_decode` and `before_row_write`; with the
variable unset each call is one truth test of a module global.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Callable

CRASH_POINTS = (
    "after_data_write",
    "after_data_fsync",
    "after_index_commit",
    "after_header_rewrite",
    "after_source_action",
)
KINDS = (
    "crash_at",
    "segv",
    "hang",
    "slow",
    "oom",
    "torn_write",
    "worker_start",
    "start_give_up_s",
)
ENV = "TIFFSINK_FAULTS"


def parse(text: str) -> dict[str, str]:
    """{kind: argument}; an unknown kind is an error, so a typo cannot disarm a test."""
    out: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        kind, sep, arg = item.partition("=")
        if not sep or kind not in KINDS or not arg:
            raise ValueError(f"{ENV}: {item!r} is not one of {', '.join(k + '=…' for k in KINDS)}")
        if kind == "crash_at" and arg not in CRASH_POINTS:
            raise ValueError(f"{ENV}: crash_at={arg!r}: allowed {', '.join(CRASH_POINTS)}")
        out[kind] = arg
    return out


_ARMED = parse(os.environ.get(ENV, ""))


def armed() -> str:
    """The faults this process's environment arms now (a supervisor hands them on to
    workers, which fork from a server started earlier, with the environment of then)."""
    return os.environ.get(ENV, "")


def arm(text: str) -> None:
    """Arm exactly the faults `text` names (in a worker, those its supervisor handed on)."""
    global _ARMED
    _ARMED = parse(text)


def spec(**faults: str) -> dict[str, str]:
    """The environment that arms `faults` in a child process: spec(crash_at="after_data_fsync")."""
    text = ",".join(f"{k}={v}" for k, v in faults.items())
    parse(text)
    return {ENV: text}


def crash_point(name: str) -> None:
    """Die here, as a power cut or kill -9 would, when this point is armed."""
    if _ARMED and _ARMED.get("crash_at") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def before_decode(path: str) -> None:
    """In a worker, just before decoding `path`: misbehave if its name is armed."""
    if not _ARMED:
        return
    name = os.path.basename(path)
    if (m := _ARMED.get("segv")) and m in name:
        ctypes.string_at(0)
    if (m := _ARMED.get("hang")) and m in name:
        while True:
            time.sleep(3600)
    if (m := _ARMED.get("slow")) and m in name:
        time.sleep(1.0)
    if (m := _ARMED.get("oom")) and m in name:
        raise MemoryError(f"injected out-of-memory on {name}")


def before_row_write(
    path: str, write: Callable[[int, memoryview], None], offset: int, row_bytes: int
) -> None:
    """In a worker, just before writing a row of `path`: die halfway through it if armed."""
    if _ARMED and (m := _ARMED.get("torn_write")) and m in os.path.basename(path):
        write(offset, memoryview(b"\xab" * (row_bytes // 2)))  # half the row, then a power cut
        os.kill(os.getpid(), signal.SIGKILL)


def at_worker_start() -> None:
    """In a worker, before its READY: exit as a worker whose imports failed would."""
    if _ARMED and (m := _ARMED.get("worker_start")) and (m == "exit" or os.path.exists(m)):
        os._exit(3)


def start_give_up_s(default: float) -> float:
    """How long the supervisor retries a worker that cannot start (tests shorten it)."""
    if _ARMED and (s := _ARMED.get("start_give_up_s")):
        return float(s)
    return default
