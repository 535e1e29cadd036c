"""The backfill feeder: every wanted file under some folders, as candidates, lazily.

`tiffsink ingest` walks the folders twice: once to count (for the progress bar and
ETA), once to feed. Both walks are lazy, so memory does not grow with the number of
files; versions the index already holds (rows or failures) are skipped, which makes a
backfill resumable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..batch import Candidate
from ..config import Config
from ..errors import TiffsinkError
from .names import NameFilter
from .scan import walk

Version = tuple[str, int, int]


class Backfill:
    """The files under `sources`, minus tiffsink's own folders."""

    def __init__(self, config: Config, sources: Sequence[Path]) -> None:
        for src in sources:
            if not src.is_dir():
                raise TiffsinkError(src, "not a folder")
        self.roots = [src.resolve() for src in sources]
        self.wanted = NameFilter.from_config(config.watch)
        self.exclude = config.excluded_folders()

    def count(self) -> tuple[int, int]:
        """(files, bytes) that the feed will consider."""
        n = b = 0
        for root in self.roots:
            for _, st in walk(root, self.wanted, True, self.exclude):
                n, b = n + 1, b + st.st_size
        return n, b

    def candidates(
        self, known: Callable[[list[Version]], set[Version]], on_skip: Callable[[], None]
    ) -> Iterator[Candidate]:
        """Files whose version `known` does not report; `on_skip` is called for the rest."""
        for root in self.roots:
            for path, st in walk(root, self.wanted, True, self.exclude):
                if known([(path, st.st_size, st.st_mtime_ns)]):
                    on_skip()
                    continue
                yield Candidate(path, str(root), st.st_size, st.st_mtime_ns)
