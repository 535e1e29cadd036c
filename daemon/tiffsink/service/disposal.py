"""What happens to a source file after its fate is durable: keep, move or delete it.

Only ever after the commit that recorded it, only if the file on disk is still the
version that was committed (a newer version written meanwhile is left alone, to be
ingested in its turn), and only while the dataset's index and rows are still the files
the writer opened (a deleted index must not cost the sources of its rows). Failed files
may be moved aside to `failed_directory`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import structlog

from ..config import Config
from ..dataset import DatasetWriter
from ..testing import faults

log = structlog.get_logger("tiffsink")


def _same_version(path: str, version: tuple[int, int]) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == version


class Disposal:
    """Acts on sources per `[sources]`; runs in the service loop's thread."""

    def __init__(self, cfg: Config, writer: DatasetWriter) -> None:
        self.root = cfg.watch.directory
        self.mode = cfg.sources.after_ingest
        self.done_dir = cfg.sources.done_directory
        self.failed_dir = cfg.sources.failed_directory
        self.writer = writer
        self.acts = self.mode != "keep" or self.failed_dir is not None

    def check(self) -> None:
        """Before acting on a commit's sources: raise DatasetLostError if the index or the
        rows' file is gone or replaced (a few stat() calls, once per commit)."""
        if self.acts:
            self.writer.check_opened()

    def _move(self, path: str, dest_root: Path) -> None:
        """Move keeping the path relative to the inbox; never overwrite (name.1.tif...)."""
        rel = os.path.relpath(path, self.root)
        dest = dest_root / (rel if not rel.startswith("..") else os.path.basename(path))
        dest.parent.mkdir(parents=True, exist_ok=True)
        n = 1
        while dest.exists():
            dest = dest.with_name(f"{dest.stem}.{n}{dest.suffix}")
            n += 1
        shutil.move(path, dest)

    def ingested(self, path: str, version: tuple[int, int]) -> None:
        """keep/move/delete, only for the version that was committed (never a newer one)."""
        if self.mode == "keep" or not _same_version(path, version):
            return
        try:
            if self.mode == "delete":
                os.unlink(path)
            elif self.done_dir is not None:
                self._move(path, self.done_dir)
        except OSError as e:
            log.error("source.action_failed", path=path, action=self.mode, detail=str(e))
        faults.crash_point("after_source_action")

    def failed(self, path: str, version: tuple[int, int]) -> None:
        if self.failed_dir is None or not _same_version(path, version):
            return
        try:
            self._move(path, self.failed_dir)
        except OSError as e:
            log.error("source.action_failed", path=path, action="move-failed", detail=str(e))

    def known(self, path: str) -> None:
        """A scan found a committed (or failed) version still in the inbox: act on it now."""
        self.check()
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            return
        v = (st.st_size, st.st_mtime_ns)
        if self.writer.lookup.ingested(path, *v):
            self.ingested(path, v)
        else:
            self.failed(path, v)
