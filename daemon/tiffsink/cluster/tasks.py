"""What runs on the Dask workers: decode a group of files, write one whole shard.

Both are plain functions of their arguments, so Dask may run them anywhere, run them
again after a worker died, or recompute a lost result: `decode_group` is deterministic
for unchanged files, and `write_shard` replaces its shard atomically, whole, from the
same rows. Neither touches index.sqlite: the client is its only writer. What a row's
chunk is and how a shard becomes durable is the dataset format's: both go through the
`ShardWriter` its store hands out, the same path its local commit takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ImageSpec, MetadataConfig
from ..dataset.formats import ShardWriter
from ..decode import Decoder, PageInfo
from ..decode.metadata import MetadataReader
from ..decode.outcome import Outcome, decode_call
from ..errors import TiffsinkError

PAGES_PER_CALL = 8


@dataclass(frozen=True)
class FileItem:
    """A file to decode, as the client listed it."""

    path: str
    root: str


@dataclass
class GroupResult:
    """A group's outcomes, and the encoded chunk of every page, in file and page order."""

    outcomes: list[Outcome]  # keyed by the item's place in the group
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

    def file(self, key: int, item: FileItem) -> tuple[Outcome, list[bytes]]:
        """All pages the spec selects, read as the local workers read them (the same
        `decode_call`, a few pages per call), each encoded at once."""
        pages: list[PageInfo] = []
        chunks: list[bytes] = []
        first: Outcome | None = None
        warning: str | None = None
        while True:
            version = (first.size, first.mtime_ns) if first is not None else None
            out = decode_call(
                self.dec, self.meta, key, item.path, item.root, len(pages), self.outs, version
            )
            if out.failed:
                return out, []
            first = first or out
            warning = warning or out.warning
            pages += out.pages
            chunks += [self.encode(self.outs[i]) for i in range(len(out.pages))]
            if not out.pages or len(pages) >= out.pages_total:
                break
        assert first is not None  # the loop ran, and its first call did not fail
        if not pages:
            return first.failure("corrupt", "page 0 yielded no image"), []
        return first._replace(pages=pages, warning=warning), chunks


def decode_group(
    items: list[FileItem], spec: ImageSpec, shards: ShardWriter, metadata: MetadataConfig
) -> GroupResult:
    """Decode and encode every page of `items` (as `shards` holds rows); failures are
    outcomes, never raised."""
    dec = _GroupDecoder(spec, shards, metadata)
    result = GroupResult([], [])
    for key, item in enumerate(items):
        outcome, chunks = dec.file(key, item)
        result.outcomes.append(outcome)
        result.chunks += chunks
    return result


def outcomes_of(result: GroupResult) -> list[Outcome]:
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
