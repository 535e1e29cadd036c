"""The records `index.sqlite` stores and returns: a committed row, a grown file version,
a failed file version, and the committed pages of a path.

Plain frozen dataclasses, so the committer thread and the cluster client can build them
from their own bookkeeping and hand them to `index.py` without sharing anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # decode pulls in OpenCV: readers of the index need none of it
    from ..decode import PageInfo


@dataclass(frozen=True)
class RowRecord:
    """One committed row of images.npy and the file version and page it came from."""

    row: int
    source: str
    page: int
    size: int
    mtime_ns: int
    content_hash: str
    src_height: int
    src_width: int
    src_dtype: str
    src_channels: int
    ingested_at: float
    meta: str = "{}"  # what the row shows (z, c, t, channel, well, label...), JSON text
    page_hash: str = ""  # digest of the page's stored bytes (decode/pagedigest.py)

    @classmethod
    def of_page(
        cls,
        row: int,
        source: str,
        version: tuple[int, int],
        content_hash: str,
        info: PageInfo,
        at: float,
    ) -> RowRecord:
        """The record of `info`'s page of `source` at `version`, stored as `row`: both
        engines build their rows' records here."""
        return cls(
            row, source, info.page, *version, content_hash, info.height, info.width,
            info.dtype, info.channels, at, info.meta, info.digest,
        )  # fmt: skip


@dataclass(frozen=True)
class GrownRecord:
    """A file version that began with exactly the committed pages of the file's earlier
    version(s): only its pages from `first_page` on became rows. `base` is the version
    whose rows start the file (the one with its page 0)."""

    source: str
    size: int
    mtime_ns: int
    base_size: int
    base_mtime_ns: int
    first_page: int
    pages: int
    at: float


@dataclass(frozen=True)
class FailureRecord:
    """A file version that could not become rows; tried again only when it changes."""

    source: str
    size: int
    mtime_ns: int
    reason: str
    detail: str
    at: float


@dataclass(frozen=True)
class CommittedPages:
    """The pages a path's rows hold now: its latest base version (the one whose rows
    start with page 0) and the versions grown from it, page digests in page order."""

    base: tuple[int, int]  # (size, mtime_ns)
    digests: tuple[str, ...]
