"""Are the dataset's files still the ones the writer opened? Checked before every commit.

A writer keeps its files open, so if someone deletes or replaces `index.sqlite` (or
`images.npy`, or the zarr array's folder) under a running daemon, its commits would go
on landing in an unlinked file, and it would then delete the sources of rows that no
longer exist anywhere. So before each commit and before any source is moved or deleted,
the paths are stat()ed and compared with the (device, inode) recorded at open.

Inode numbers are only meaningful while the inode is alive: the index and images.npy are
kept open by SQLite and the store; the zarr folders are pinned here by an O_DIRECTORY
descriptor, so a deleted folder's number cannot be reused by a new one. (No descriptor of
our own on index.sqlite: closing one would drop SQLite's POSIX locks on the file.)
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Opened:
    """One file or folder as it was when the writer opened it."""

    path: Path
    dev: int
    ino: int

    @classmethod
    def of(cls, path: Path) -> Opened:
        st = os.stat(path)
        return cls(path, st.st_dev, st.st_ino)

    def problem(self) -> str | None:
        """Why the path no longer names what was opened, or None if it still does."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return f"{self.path} was deleted while the dataset was open"
        except OSError as e:
            return f"{self.path} cannot be checked: {e.strerror or e}"
        if (st.st_dev, st.st_ino) != (self.dev, self.ino):
            return f"{self.path} was replaced by another file while the dataset was open"
        return None


class OpenedFiles:
    """The dataset files a writer depends on; `problem` costs one stat per file."""

    def __init__(self, files: list[Path], folders: list[Path]) -> None:
        self._fds: list[int] = []
        try:
            for d in folders:
                self._fds.append(os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            self.items = [Opened.of(p) for p in (*files, *folders)]
        except BaseException:
            self.close()
            raise

    def problem(self) -> str | None:
        """The first file that is gone or replaced, said for a person; None when all hold."""
        for item in self.items:
            why = item.problem()
            if why is not None:
                return why
        return None

    def close(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
