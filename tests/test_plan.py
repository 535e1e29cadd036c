"""The cluster client's row plan: dense rows whatever fails, one job per whole shard."""

from __future__ import annotations

from tiffsink.batch import Candidate
from tiffsink.cluster.plan import ShardPlanner
from tiffsink.decode import PageInfo
from tiffsink.decode.outcome import Outcome

File = tuple[str, Outcome]  # a file of a group, and its outcome (keyed when grouped)


def ok(path: str, pages: int = 1) -> File:
    infos = [PageInfo(p, 4, 4, "uint16", 1, '{"k": 1}') for p in range(pages)]
    return path, Outcome(-1, 10, 20, pages, infos, "h")


def bad(path: str) -> File:
    return path, Outcome(-1, 10, 20, reason="corrupt", detail="x")


def group(*files: File) -> tuple[list[Outcome], list[Candidate]]:
    """A decoded group as the client gets it: outcomes keyed by the file's place."""
    outs = [o._replace(key=k) for k, (_, o) in enumerate(files)]
    return outs, [Candidate(path, "/", 10, 20) for path, _ in files]


def never(_: Outcome) -> bool:
    return False


def test_failed_files_leave_no_holes_and_shards_close_at_their_boundary() -> None:
    """Rows are dense across a failure; a shard job closes exactly at row 4."""
    p = ShardPlanner(committed=0, rows_per_shard=4)
    outs = [ok("a"), bad("b"), ok("c", pages=3), ok("d")]
    p.add("G1", *group(*outs), never)
    (job,) = p.ready
    assert job.index == 0 and job.keep == 0
    assert [r.row for r in job.records] == [0, 1, 2, 3]
    assert [(r.source, r.page) for r in job.records] == [("a", 0), ("c", 0), ("c", 1), ("c", 2)]
    assert job.parts == [("G1", 0, 4)]  # chunks 0..3 of the group: a, c0, c1, c2
    assert [c.path for c, _ in job.failures] == ["b"]
    assert [c.path for c, _, _ in job.files_done] == ["a", "c"]
    assert p.current.parts == [("G1", 4, 5)] and p.current.records[0].row == 4
    assert p.current.records[0].meta == '{"k": 1}'


def test_a_run_starting_mid_shard_keeps_the_committed_chunks() -> None:
    """With 6 rows committed and shards of 4, the first job is shard 1 keeping 2 chunks."""
    p = ShardPlanner(committed=6, rows_per_shard=4)
    outs = [ok("a"), ok("b"), ok("c")]
    p.add("G", *group(*outs), never)
    (job,) = p.ready
    assert (job.index, job.keep, [r.row for r in job.records]) == (1, 2, [6, 7])
    assert p.current.index == 2 and p.current.keep == 0


def test_a_shard_takes_slices_of_several_groups() -> None:
    p = ShardPlanner(committed=0, rows_per_shard=4)
    g1, g2 = [ok("a"), ok("b")], [ok("c"), ok("d"), ok("e")]
    p.add("G1", *group(*g1), never)
    p.add("G2", *group(*g2), never)
    (job,) = p.ready
    assert job.parts == [("G1", 0, 2), ("G2", 0, 2)]
    assert p.current.parts == [("G2", 2, 3)]


def test_skipped_files_take_no_rows_but_their_chunks_are_stepped_over() -> None:
    p = ShardPlanner(committed=0, rows_per_shard=8)
    outs = [ok("a", 2), ok("b"), ok("c")]
    skipped = p.add("G", *group(*outs), lambda o: o.key == 0)  # a
    assert skipped == 1
    assert p.current.parts == [("G", 2, 4)]  # a's two chunks are not used
    assert [r.source for r in p.current.records] == ["b", "c"]


def test_flush_closes_the_last_partial_shard_and_failure_only_jobs() -> None:
    p = ShardPlanner(committed=0, rows_per_shard=4)
    outs = [ok("a"), bad("b")]
    p.add("G", *group(*outs), never)
    p.flush()
    (job,) = p.ready
    assert len(job.records) == 1 and len(job.failures) == 1
    p.ready = []
    p.add("H", *group(bad("z")), never)
    p.flush()
    (only,) = p.ready
    assert only.parts == [] and len(only.failures) == 1
