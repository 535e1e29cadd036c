"""Which paths are ours to ingest: name patterns, and folders tiffsink never reads.

Matching is on the base name, case-insensitive (instruments write .TIF as often as
.tif); hidden and temporary names are never matches, so a file is picked up only under
its final name. A path that is not valid UTF-8 (a stray Latin-1 byte from an old
instrument) is never a match: the index stores paths as UTF-8 text, so it is logged once
and left for a person to rename.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable
from pathlib import Path

from ..config import WatchConfig
from ..logthrottle import throttle


class NameFilter:
    """`filter(path)`: whether a file of this name is one to ingest."""

    def __init__(self, patterns: Iterable[str], ignore: Iterable[str]) -> None:
        # One regex per list: a name is tested once, not once per pattern (per file, hot).
        self._want = _union(patterns)
        self._ignore = _union(ignore)
        self._unsupported: set[str] = set()  # undecodable paths already logged

    @classmethod
    def from_config(cls, cfg: WatchConfig) -> NameFilter:
        return cls(cfg.patterns, cfg.ignore_patterns)

    def __call__(self, path: str) -> bool:
        name = os.path.basename(path).lower()
        if self._ignore.match(name) or not self._want.match(name):
            return False
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:  # os.fsdecode's surrogates: SQLite cannot store them
            if path not in self._unsupported:
                self._unsupported.add(path)
                shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                throttle.warning(
                    "file.unsupported_name",
                    path=shown,
                    detail="path is not valid UTF-8; rename the file to ingest it",
                )
            return False
        return True


def _union(patterns: Iterable[str]) -> re.Pattern[str]:
    """One compiled regex matching any of the (lower-cased) shell patterns; none: nothing."""
    parts = [fnmatch.translate(p.lower()) for p in patterns]
    return re.compile("|".join(f"(?:{p})" for p in parts) if parts else "(?!)")


def inside(path: str, folders: Iterable[Path]) -> bool:
    """Whether `path` lies in one of `folders` (done/failed folders are never ingested)."""
    return any(os.path.commonpath([path, str(f)]) == str(f) for f in folders)
