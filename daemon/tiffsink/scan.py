"""List the files under a source folder that look like TIFFs we should ingest.

Shared by the backfill and by the daemon's reconciliation scans. Matching is on the
base name, case-insensitive (instruments write .TIF as often as .tif); hidden and
temporary names are never matches, so a file is picked up only under its final name.
Symlinked folders are not descended (a loop or an escape from the root); symlinked
and special files are yielded, so the decoder records why they are refused.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path


class NameFilter:
    def __init__(self, patterns: Iterable[str], ignore: Iterable[str]) -> None:
        self.patterns = [p.lower() for p in patterns]
        self.ignore = [p.lower() for p in ignore]

    def __call__(self, path: str) -> bool:
        name = os.path.basename(path).lower()
        if any(fnmatch.fnmatchcase(name, p) for p in self.ignore):
            return False
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)


def walk(
    root: Path, wanted: NameFilter, recursive: bool = True, exclude: Iterable[Path] = ()
) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (absolute path, lstat) for every wanted non-directory entry under `root`."""
    skip = {os.path.realpath(p) for p in exclude}
    stack = [os.path.abspath(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        entries.sort(key=lambda e: e.name)
        subdirs = []
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if recursive and os.path.realpath(e.path) not in skip:
                    subdirs.append(e.path)
                continue
            if wanted(e.path):
                yield e.path, st
        stack.extend(reversed(subdirs))
