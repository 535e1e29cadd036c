"""One decode call's outcome, made and read alike by both engines.

A local worker and a Dask task run the same `decode_call`: it reads pages through
`readfile.read_pages`, maps every expected problem to a failure reason (`reason_of`,
the one place that mapping is written), and returns one `Outcome`. So a file fails with
the same reason, and its rows carry the same facts, whichever engine read it.

`Outcome` is a NamedTuple because the supervisor unpickles one per file from its
workers' pipes: a tuple is smaller and quicker to load than a dataclass.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..errors import DecodeError
from .decoder import Decoder, PageInfo
from .metadata import MetadataReader
from .readfile import FileRead, read_pages

# A row write that failed is the dataset's problem, not the file's: the supervisor
# pauses intake on a full disk and stops on any other I/O error.
DATASET_REASONS = ("dataset_full", "dataset_io_error")


class Outcome(NamedTuple):
    """Pages decoded from one file (written into the rows the caller gave), or why not.

    `key` is the caller's name for the call (a local task's id, a group's item number).
    A failure has `reason` set; `size`/`mtime_ns` are the version read (-1 if the file
    was refused before it was opened)."""

    key: int
    size: int
    mtime_ns: int
    pages_total: int = 0
    pages: Sequence[PageInfo] = ()
    content_hash: str = ""
    reason: str = ""  # set: the file cannot become rows (errors.FAILURE_REASONS)
    detail: str = ""  # for people
    warning: str | None = None  # metadata that could not be read (the rows stand)
    skipped: tuple[int, int] | None = None  # (overview, mask) pages that are not rows
    prefix: int = 0  # leading pages equal to the committed ones, skipped (pages follow)
    decode_ms: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.reason)

    def failure(self, reason: str, detail: str) -> Outcome:
        """This call's file version, failed for `reason` (a row write after the decode)."""
        return Outcome(self.key, self.size, self.mtime_ns, reason=reason, detail=detail)


def reason_of(e: BaseException) -> tuple[str, str]:
    """The failure reason and detail for an error raised while decoding a file."""
    if isinstance(e, DecodeError):
        return e.reason, e.detail
    if isinstance(e, MemoryError):
        return "out_of_memory", str(e) or "MemoryError"
    return "decoder_error", f"{type(e).__name__}: {e}"  # a decoder bug costs one file


def write_reason(e: OSError) -> str:
    """The dataset's failure reason for a row write that raised `e`."""
    return "dataset_full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "dataset_io_error"


def decode_call(
    decoder: Decoder,
    meta: MetadataReader,
    key: int,
    path: str,
    root: str | None,
    first_page: int,
    outs: Sequence[np.ndarray],
    version: tuple[int, int] | None = None,
    prefix: Sequence[str] = (),
) -> Outcome:
    """Decode pages `first_page`.. of `path` into `outs` (see `read_pages`); never raises
    for a problem of the file: that is a failed Outcome naming its reason."""
    t0 = time.perf_counter()
    got = FileRead()
    try:
        read_pages(decoder, meta, path, root, first_page, outs, version, got, prefix)
    except Exception as e:
        reason, detail = reason_of(e)
        return Outcome(key, got.size, got.mtime_ns, reason=reason, detail=detail)
    res = got.result
    assert res is not None
    return Outcome(
        key,
        got.size,
        got.mtime_ns,
        res.pages_total,
        res.pages,
        res.content_hash or "",
        warning=got.meta_warning,
        skipped=(res.overview, res.mask) if res.overview or res.mask else None,
        prefix=got.prefix,
        decode_ms=(time.perf_counter() - t0) * 1000,
    )
