"""The backfill feeder: every wanted file under some folders, as candidates, lazily.

`tiffsink ingest` walks the folders twice: once to count (for the progress bar and
ETA), once to feed. Both walks are lazy, so memory does not grow with the number of
files; versions the index already holds (rows or failures) are skipped, which makes a
backfill resumable. A folder given inside another (or twice) is walked once, with it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..batch import Candidate
from ..config import Config
from ..errors import TiffsinkError
from .names import NameFilter
from .scan import count_files, walk

Version = tuple[str, int, int]
LOOKUP_CHUNK = 256


class Backfill:
    """The files under `sources`, minus tiffsink's own folders."""

    def __init__(self, config: Config, sources: Sequence[Path]) -> None:
        for src in sources:
            if not src.is_dir():
                raise TiffsinkError(src, "not a folder")
        self.roots = _outermost([src.resolve() for src in sources])
        self.wanted = NameFilter.from_config(config.watch)
        self.patterns, self.ignored = config.watch.patterns, config.watch.ignore_patterns
        self.exclude = config.excluded_folders()

    def count(self) -> int:
        """Files the feed will consider (names only: no stat per file)."""
        return sum(count_files(root, self.wanted, True, self.exclude) for root in self.roots)

    def require_files(self) -> int:
        """`count`, or TiffsinkError naming the folders and patterns when no file matches,
        before anything (a dataset folder) is created for nothing."""
        n = self.count()
        if n == 0:
            where = ", ".join(str(r) for r in self.roots)
            raise TiffsinkError(
                None,
                f"no file to ingest in {where}: none matches [watch] patterns "
                f"{list(self.patterns)} outside ignore_patterns {list(self.ignored)}; "
                "nothing was created",
            )
        return n

    def candidates(
        self, known: Callable[[list[Version]], set[Version]], on_skip: Callable[[], None]
    ) -> Iterator[Candidate]:
        """Files whose version `known` does not report; `on_skip` is called for the rest.

        Looked up LOOKUP_CHUNK files at a time: one index query per chunk, not per file."""
        for root in self.roots:
            found = walk(root, self.wanted, True, self.exclude)
            while chunk := list(itertools.islice(found, LOOKUP_CHUNK)):
                versions = [(p, st.st_size, st.st_mtime_ns) for p, st in chunk]
                seen = known(versions)
                for v in versions:
                    if v in seen:
                        on_skip()
                    else:
                        yield Candidate(v[0], str(root), v[1], v[2], checked=True)


def _outermost(roots: list[Path]) -> list[Path]:
    """The roots not inside another (or given twice): each path is then walked once, so a
    version looked up as new cannot be committed by an earlier sighting of itself."""
    out: list[Path] = []
    for r in roots:  # in the order given: rows are positional
        if r not in out and not any(r != o and r.is_relative_to(o) for o in roots):
            out.append(r)
    return out
