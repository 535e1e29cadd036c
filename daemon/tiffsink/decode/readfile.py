"""One call of the decode stage as both engines run it: the local pool's workers and the
Dask tasks. Open the file safely, check its version, decode pages, add their metadata,
and check that the file did not change meanwhile: so a row is the same whichever engine
made it. Given the digests of the file's committed pages (`prefix`), a new version that
begins with exactly those pages is decoded from its first new page only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import DecodeError
from ..testing import faults
from . import pagedigest
from .decoder import Decoder, DecodeResult
from .metadata import MetadataReader
from .safeopen import open_source


@dataclass
class FileRead:
    """The version read (set as soon as the file is open, so a failure can record it), the
    pages decoded, and a warning about metadata that could not be read."""

    size: int = -1
    mtime_ns: int = -1
    result: DecodeResult | None = None
    meta_warning: str | None = None
    prefix: int = 0  # leading pages equal to the committed ones: not decoded again


def read_pages(
    decoder: Decoder,
    meta: MetadataReader,
    path: str,
    root: str | None,
    first_page: int,
    outs: Sequence[np.ndarray],
    version: tuple[int, int] | None,
    got: FileRead,
    prefix: Sequence[str] = (),
) -> FileRead:
    """Decode pages first_page.. of `path` into `outs`, filling `got`. Raises DecodeError
    for every expected problem (MemoryError and decoder bugs propagate as they are).

    `prefix`: digests of the committed pages of an earlier version of `path` (only with
    first_page 0). If this version begins with exactly those pages, they are skipped:
    `got.prefix` says how many, and decoding starts at the first new page (if any)."""
    keys = meta.path_keys(path, root)
    if keys is None:
        if meta.config.on_mismatch == "fail":
            raise DecodeError(
                path,
                "no_metadata_match",
                f"path does not match [metadata] path_pattern {meta.config.path_pattern!r}",
            )
        keys = {}
    fd, st = open_source(path, root)
    try:
        got.size, got.mtime_ns = st.st_size, st.st_mtime_ns
        if version is not None and version != (got.size, got.mtime_ns):
            raise DecodeError(path, "changed_during_read", "file changed between pages")
        faults.before_decode(path)
        grown = None
        if prefix and first_page == 0:
            buf = decoder.scratch.raw("digest", min(pagedigest.CHUNK, got.size)).data
            grown = pagedigest.committed_prefix(fd, got.size, prefix, buf)
        if grown is None:
            res = decoder.decode(fd, path, got.size, first_page, outs)
        else:
            res = _after_prefix(decoder, fd, path, got.size, grown, outs)
            got.prefix = grown[0]
        if res.pages:
            skipped = {"overview_pages": res.overview} if res.overview else {}
            if res.mask:
                skipped["mask_pages"] = res.mask
            name, numbers = os.path.basename(path), [p.page for p in res.pages]
            metas, got.meta_warning = meta.pages(fd, got.size, name, numbers, {**skipped, **keys})
            res.pages = [p._replace(meta=m) for p, m in zip(res.pages, metas, strict=True)]
        st2 = os.fstat(fd)
        if (st2.st_size, st2.st_mtime_ns) != (got.size, got.mtime_ns):
            raise DecodeError(
                path,
                "changed_during_read",
                f"size/mtime went from {got.size}/{got.mtime_ns} to "
                f"{st2.st_size}/{st2.st_mtime_ns}",
            )
    finally:
        os.close(fd)
    got.result = res
    return got


def _after_prefix(
    decoder: Decoder,
    fd: int,
    path: str,
    size: int,
    grown: tuple[int, bool],
    outs: Sequence[np.ndarray],
) -> DecodeResult:
    """Decode a grown file from its first new page; the content hash still covers it all."""
    k, more = grown
    digest = decoder.content_hash(fd, path, size)
    if not more or decoder.spec.pages == "first":
        return DecodeResult(1 if decoder.spec.pages == "first" else k, [], digest)
    res = decoder.decode(fd, path, size, k, outs)
    res.content_hash = digest
    return res
