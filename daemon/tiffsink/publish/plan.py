"""Which shards a publisher sends next: a pure function of what each side holds.

The remote commit point is the array's shape. Rows past it are sent shard by shard in
row order: every full local shard once, then (when due) the partly filled last one,
replaced whole. A round sends at most `max_shards`, so memory stays bounded whatever the
backlog, and the shape is raised once per round, after its shards and index objects.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShardSend:
    """Shard `shard` with its first `rows` rows (all of them for a full shard)."""

    shard: int
    rows: int
    full: bool


def plan(
    remote: int, local: int, rows_per_shard: int, max_shards: int, tail_due: bool
) -> list[ShardSend]:
    """The next round: shards from the one holding row `remote` on, towards `local` rows.

    The partly filled last shard is sent only when `tail_due` (the follower paces it, as
    it is replaced whole each time) and when the round has room for it."""
    S = rows_per_shard
    sends: list[ShardSend] = []
    s = remote // S
    while (s + 1) * S <= local and len(sends) < max_shards:
        sends.append(ShardSend(s, S, True))
        s += 1
    tail = local - s * S
    if tail > 0 and len(sends) < max_shards and s * S + tail > remote and tail_due:
        sends.append(ShardSend(s, tail, False))
    return sends


def reached(sends: list[ShardSend], rows_per_shard: int) -> int:
    """The remote row count once a round's shards are in place (they are contiguous)."""
    last = sends[-1]
    return last.shard * rows_per_shard + last.rows
