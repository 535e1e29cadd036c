"""Test-only crash points in the commit protocol, free when unused.

`TIFFSINK_FAILPOINT=name` (read once at import) makes the process SIGKILL itself the
first time it reaches that point, so tests can prove recovery at every step without
patching code. With the variable unset, `hit` is one global comparison.
"""

from __future__ import annotations

import os
import signal

_ARMED = os.environ.get("TIFFSINK_FAILPOINT", "")

POINTS = (
    "after_data_write",
    "after_data_fsync",
    "after_index_commit",
    "after_header_rewrite",
    "after_source_action",
)


def hit(name: str) -> None:
    """Die here, as a power cut or kill -9 would, when this point is armed."""
    if _ARMED and name == _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
