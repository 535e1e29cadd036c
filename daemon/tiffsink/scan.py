"""List the files under a source folder that look like TIFFs we should ingest.

Shared by the backfill and by the daemon's reconciliation scans. Matching is on the
base name, case-insensitive (instruments write .TIF as often as .tif); hidden and
temporary names are never matches, so a file is picked up only under its final name.
Symlinked folders are not descended (a loop or an escape from the root); symlinked
and special files are yielded, so the decoder records why they are refused. A path that
is not valid UTF-8 (a stray Latin-1 byte from an old instrument) is never a match: the
index stores paths as UTF-8 text, so it is logged once and left for a person to rename.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

import structlog

log = structlog.get_logger("tiffsink")


class NameFilter:
    def __init__(self, patterns: Iterable[str], ignore: Iterable[str]) -> None:
        self.patterns = [p.lower() for p in patterns]
        self.ignore = [p.lower() for p in ignore]
        self._unsupported: set[str] = set()  # undecodable paths already logged

    def __call__(self, path: str) -> bool:
        name = os.path.basename(path).lower()
        if any(fnmatch.fnmatchcase(name, p) for p in self.ignore):
            return False
        if not any(fnmatch.fnmatchcase(name, p) for p in self.patterns):
            return False
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:  # os.fsdecode's surrogates: SQLite cannot store them
            if path not in self._unsupported:
                self._unsupported.add(path)
                shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                log.warning(
                    "file.unsupported_name",
                    path=shown,
                    detail="path is not valid UTF-8; rename the file to ingest it",
                )
            return False
        return True


def walk(
    root: Path, wanted: NameFilter, recursive: bool = True, exclude: Iterable[Path] = ()
) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (absolute path, lstat) for every wanted non-directory entry under `root`."""
    skip = {os.path.realpath(p) for p in exclude}
    stack = [os.path.abspath(root)]
    while stack:
        folder = stack.pop()
        try:
            # Iterated lazily, in directory order: a folder of 100k files must not cost
            # 100k DirEntry objects at once (the backfill's memory stays flat).
            it = os.scandir(folder)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        subdirs: list[str] = []
        with it:
            yield from _files(it, wanted, recursive, skip, subdirs)
        subdirs.sort()
        stack.extend(reversed(subdirs))


def _files(
    it: Iterator[os.DirEntry[str]],
    wanted: NameFilter,
    recursive: bool,
    skip: set[str],
    subdirs: list[str],
) -> Iterator[tuple[str, os.stat_result]]:
    """The wanted files of one folder; its sub-folders are collected into `subdirs`."""
    for e in it:
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
