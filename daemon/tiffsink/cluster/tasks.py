"""What runs on the Dask workers: decode a group of files, write one whole shard.

Both are plain functions of their arguments, so Dask may run them anywhere, run them
again after a worker died, or recompute a lost result: `decode_group` is deterministic
for unchanged files, and `write_shard` replaces its shard atomically, whole, from the
same rows. Neither touches index.sqlite: the client is its only writer. What a row's
chunk is and how a shard becomes durable is the dataset format's: both go through the
`ShardWriter` its store hands out, the same path its local commit takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import ImageSpec, MetadataConfig
from ..dataset.formats import ShardWriter
from ..decode import Decoder, PageInfo
from ..decode.metadata import MetadataReader
from ..decode.readfile import FileRead, read_pages
from ..errors import DecodeError, TiffsinkError

PAGES_PER_CALL = 8


@dataclass(frozen=True)
class FileItem:
    """A file to decode, as the client listed it."""

    path: str
    root: str


@dataclass
class FileOutcome:
    """One file's fate: pages (their chunks are in the group's `chunks`) or a failure."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str = ""
    pages: list[PageInfo] = field(default_factory=list)
    reason: str = ""  # set for a failure
    detail: str = ""
    warning: str = ""  # metadata that could not be read (the rows stand)


@dataclass
class GroupResult:
    """A group's outcomes, and the encoded chunk of every page, in file and page order."""

    outcomes: list[FileOutcome]
    chunks: list[bytes]


class _GroupDecoder:
    """Decodes files page by page into reused outputs and encodes each page at once, as
    a local worker decodes into its slots and writes each page into its pending slot."""

    def __init__(self, spec: ImageSpec, shards: ShardWriter, metadata: MetadataConfig) -> None:
        self.spec, self.dec = spec, Decoder(spec)
        self.meta = MetadataReader(metadata)
        self.encode = shards.encoder()
        per_call = 1 if spec.pages == "first" else PAGES_PER_CALL
        self.outs = [np.empty(spec.row_shape, spec.dtype) for _ in range(per_call)]

    def file(self, item: FileItem) -> tuple[FileOutcome, list[bytes]]:
        """All pages the spec selects, read as the local workers read them (the same
        `read_pages`), each encoded at once; every expected problem is a failed outcome."""
        got = FileRead()
        pages: list[PageInfo] = []
        chunks: list[bytes] = []
        digest, warning = "", ""
        try:
            while True:
                version = (got.size, got.mtime_ns) if pages else None
                read_pages(self.dec, self.meta, item.path, item.root, len(pages), self.outs,
                           version, got)  # fmt: skip
                res = got.result
                assert res is not None
                digest = res.content_hash or digest
                warning = warning or got.meta_warning or ""
                pages += res.pages
                chunks += [self.encode(self.outs[i]) for i in range(len(res.pages))]
                if not res.pages or len(pages) >= res.pages_total:
                    break
            if not pages:
                raise DecodeError(item.path, "corrupt", "page 0 yielded no image")
        except DecodeError as e:
            return self._failed(item, got, e.reason, e.detail)
        except MemoryError as e:
            return self._failed(item, got, "out_of_memory", str(e) or "MemoryError")
        except Exception as e:  # a decoder bug costs one file, never the task
            return self._failed(item, got, "decoder_error", f"{type(e).__name__}: {e}")
        out = FileOutcome(item.path, got.size, got.mtime_ns, digest, pages, warning=warning)
        return out, chunks

    @staticmethod
    def _failed(
        item: FileItem, got: FileRead, reason: str, detail: str
    ) -> tuple[FileOutcome, list[bytes]]:
        return FileOutcome(item.path, got.size, got.mtime_ns, reason=reason, detail=detail), []


def decode_group(
    items: list[FileItem], spec: ImageSpec, shards: ShardWriter, metadata: MetadataConfig
) -> GroupResult:
    """Decode and encode every page of `items` (as `shards` holds rows); failures are
    outcomes, never raised."""
    dec = _GroupDecoder(spec, shards, metadata)
    result = GroupResult([], [])
    for item in items:
        outcome, chunks = dec.file(item)
        result.outcomes.append(outcome)
        result.chunks += chunks
    return result


def outcomes_of(result: GroupResult) -> list[FileOutcome]:
    """The small part of a group's result, for the client (chunks stay on the workers)."""
    return result.outcomes


@dataclass(frozen=True)
class ShardPlan:
    """Which shard to write, and how many committed chunks of it to keep."""

    shards: ShardWriter  # the dataset's whole-shard path
    index: int
    keep: int  # chunks already committed at the start of this shard (the old tail)


def write_shard(plan: ShardPlan, parts: list[tuple[GroupResult, int, int]]) -> int:
    """Write shard `plan.index` whole: its kept chunks, then parts' chunks[start:stop].

    Returns how many chunks it holds. Atomic (tmp, fsync, rename, fsync the folders), so
    running it twice, or after a crash, is harmless."""
    try:
        chunks: list[bytes] = plan.shards.kept(plan.index, plan.keep)
        for result, start, stop in parts:
            chunks += result.chunks[start:stop]
        plan.shards.write(plan.index, chunks)
    except TiffsinkError as e:
        # Raised on a Dask worker: its message travels, as an exception that pickles.
        raise RuntimeError(str(e)) from None
    return len(chunks)
