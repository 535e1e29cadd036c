"""Text for a terminal: file names as they are, but never able to move the cursor.

A file name may hold any byte but '/' and NUL. Printed raw, a newline splits one record
into two lines and an escape sequence reaches the terminal; so human output shows
non-printable characters (and the backslash, to stay unambiguous) as Python escapes.
JSON output is already safe and is left alone.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def printable(s: str) -> str:
    """`s` with non-printable characters escaped, e.g. "a\\nb" for a newline."""
    if s.isprintable() and "\\" not in s:
        return s  # the common case: nothing to escape
    return "".join(_escape(ch) for ch in s)


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
