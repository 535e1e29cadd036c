"""`tiffsink verify URL [--against DATASET]`: check a published copy.

Against its own index: every row below the shape is in its shard (which parses, checksum
and all) and has exactly one index record, rows 0..N-1 without gaps or doubles, and no
file version twice. Against a local dataset: the copy holds no more rows than the
dataset committed, and every published row equals the local one, pixels and record.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import TiffsinkError
from ..opener import open_dataset
from ..verify import Report
from . import keys
from .reader import RemoteDataset


def verify_remote(url: str, against: Path | None = None) -> Report:
    rep = Report()
    try:
        remote = RemoteDataset(url)
    except (TiffsinkError, ValueError) as e:
        rep.problems.append(f"{url}: {e}")
        return rep
    n, S = len(remote), remote.image.rows_per_shard
    rep.notes.append(f"{url}: {n} published rows in shards of {S}")
    rows = [remote.record(r).row for r in range(n)] if n else []
    if rows != list(range(n)):
        rep.problems.append(f"{url}: the index objects do not hold rows 0..{n - 1} once each")
    versions = [(r.source, r.size, r.mtime_ns, r.page) for r in map(remote.record, range(n))]
    if len(set(versions)) != len(versions):
        rep.problems.append(f"{url}: a file version's page is published twice")
    local = None
    if against is not None:
        local = open_dataset(against)
        if n > len(local):
            rep.problems.append(f"{url}: {n} rows published, {against} committed {len(local)}")
            local.close()
            local = None
    try:
        for s in range((n + S - 1) // S):
            first, stop = s * S, min(n, (s + 1) * S)
            try:
                got = remote.read(first, stop)
            except TiffsinkError as e:
                rep.problems.append(str(e))
                continue
            if local is None:
                continue
            if not np.array_equal(got, local.read(first, stop)):
                rep.problems.append(
                    f"{url}: shard {s} differs from {against}'s rows {first}..{stop - 1}"
                )
            if [_same(remote.record(r)) for r in range(first, stop)] != [
                _same(local.record(r)) for r in range(first, stop)
            ]:
                rep.problems.append(f"{url}: {keys.index_key(s)} differs from {against}'s index")
    finally:
        if local is not None:
            local.close()
        remote.close()
    if against is not None and rep.ok:
        rep.notes.append(f"{url}: every published row equals {against}'s")
    return rep


def _same(r: object) -> tuple[object, ...]:
    return tuple(
        getattr(r, k)
        for k in ("row", "source", "page", "size", "mtime_ns", "content_hash", "page_hash", "meta")
    )
