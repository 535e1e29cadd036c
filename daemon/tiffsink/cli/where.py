"""`tiffsink query --where KEY=VALUE`: conditions as typed JSON values, checked up front.

VALUE is read as JSON where it is JSON (`site=3` is the number 3, `flag=true` the boolean,
`well=B03` stays text) and compared with the row's value of the same JSON type. Every
mistake is one line naming the condition, never a traceback from SQLite.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ConfigError

INT64 = (-(2**63), 2**63 - 1)  # what SQLite (and so the index) can compare exactly


def parse_where(conditions: list[str]) -> dict[str, Any]:
    """{key: typed value} from KEY=VALUE strings; ConfigError naming `--where` otherwise."""
    equals: dict[str, Any] = {}
    for cond in conditions:
        key, sep, raw = cond.partition("=")
        if not sep or not key:
            raise _err(cond, "expected KEY=VALUE")
        if not key.isprintable() or '"' in key:
            raise _err(cond, "a key may not hold quotes or control characters")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        if isinstance(value, list | dict):
            value = raw  # an array or object is not a metadata value: compare the text
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if is_int and not INT64[0] <= value <= INT64[1]:
            raise _err(cond, "integer out of range (64-bit)")
        if isinstance(value, float) and value != value:  # NaN equals nothing
            raise _err(cond, "NaN is not a value")
        equals[key] = value
    return equals


def _err(cond: str, reason: str) -> ConfigError:
    return ConfigError(None, "--where", f"{cond!r}: {reason}")
