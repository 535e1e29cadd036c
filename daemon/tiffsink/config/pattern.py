"""`[metadata] path_pattern`, compiled with RE2: matching time is linear in the path.

Python's `re` backtracks, so a pattern such as `(?P<k>(a+)+)b` runs for minutes on a
name of 30 a's, once per file, in a worker, until the task's timeout. RE2 never
backtracks; the price is that it refuses what needs backtracking (backreferences,
lookaround), which is then a config error at load, naming the key, instead of a stall.
The same compile serves the config check and every reader (local workers and the
cluster's tasks), so what loads is exactly what runs.
"""

from __future__ import annotations

from typing import Any

import re2

MAX_PATTERN_CHARS = 4096  # a path pattern is a line, not a program
MAX_PROGRAM_BYTES = 8 << 20  # RE2's own default: a bigger compiled program is refused


class PatternError(ValueError):
    """The pattern is not one RE2 accepts; the message says why."""


def compile_path_pattern(pattern: str) -> Any:
    """The compiled RE2 pattern (its `search` and `groupindex` are `re`'s)."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"longer than {MAX_PATTERN_CHARS} characters")
    opts = re2.Options()
    opts.log_errors = False  # RE2 would print its own line to stderr; ours names the key
    opts.max_mem = MAX_PROGRAM_BYTES
    try:
        return re2.compile(pattern, opts)
    except re2.error as e:
        why = e.args[0] if e.args else e
        text = why.decode("utf-8", "replace") if isinstance(why, bytes) else str(why)
        raise PatternError(
            f"{text} (RE2 syntax: no backreferences or lookaround, which can take exponential time)"
        ) from None
