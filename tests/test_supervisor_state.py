"""The supervisor's state machine, driven synchronously: events in, instructions out.

No process, pipe, thread or disk: each test feeds `SupervisorState` the events the shell
would (a feeder's batch, workers' answers, commits ending, a full disk, a stop) and checks
the instructions it returns, the way dask/distributed tests its `WorkerState`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

import pytest

from tiffsink.batch import Candidate
from tiffsink.dataset.records import CommittedPages
from tiffsink.decode import PageInfo
from tiffsink.decode.outcome import Outcome
from tiffsink.pipeline.bookkeeping import MAX_OPEN_BATCHES
from tiffsink.pipeline.events import (
    Advance,
    Answers,
    CommitDone,
    CommitFailed,
    DiskFull,
    Drained,
    Event,
    Stop,
    Submit,
    TaskDone,
)
from tiffsink.pipeline.instructions import (
    Commit,
    CutPending,
    Drain,
    Instruction,
    MoveRow,
    PauseIntake,
    Report,
    Requeue,
    RowWriteFailed,
    Send,
    SwapRows,
    WaitCommit,
)
from tiffsink.pipeline.messages import Lost, Task
from tiffsink.pipeline.outcomes import MAX_CRASH_ATTEMPTS
from tiffsink.pipeline.state import SupervisorState

In = TypeVar("In")
SIZE, MTIME = 100, 7  # the version every feeder saw, unless a test says otherwise
WALL = 1700000000.0


def cand(name: str, size: int | None = SIZE, mtime: int | None = MTIME) -> Candidate:
    return Candidate(f"/in/{name}.tif", "/in", size, mtime)


def of(kind: type[In], out: Iterable[Instruction]) -> list[In]:
    return [i for i in out if isinstance(i, kind)]


def task(s: Send) -> Task:
    """The message the shell builds from a Send (offsets are the store's business)."""
    return Task(s.task_id, s.path, s.root, s.first_page, s.rows, (), s.version, s.prefix)


def result(
    s: Send,
    pages: int = 1,
    total: int | None = None,
    size: int = SIZE,
    mtime: int = MTIME,
    prefix: int = 0,
    first: int | None = None,
) -> TaskDone:
    """A worker's answer: `pages` pages written, from page `first` (the task's first page,
    or the first after a grown file's `prefix`)."""
    first = s.first_page + prefix if first is None else first
    infos = [PageInfo(first + i, 8, 8, "uint16", 1, "{}", f"d{first + i}") for i in range(pages)]
    total = pages if total is None else total
    return task(s), Outcome(s.task_id, size, mtime, total, infos, "hash", prefix=prefix)


def failure(s: Send, reason: str = "corrupt", size: int = SIZE, mtime: int = MTIME) -> TaskDone:
    return task(s), Outcome(s.task_id, size, mtime, reason=reason, detail=f"{reason} detail")


def lost(s: Send, reason: str = "decoder_crash") -> Lost:
    return Lost(task(s), reason, f"{reason} detail")


class Machine:
    """A SupervisorState with a fake clock, and short ways to feed it."""

    def __init__(self, chunk: int = 1, committed: int = 0) -> None:
        self.now = 10.0
        self.st = SupervisorState(committed, chunk, clock=lambda: self.now, wall=lambda: WALL)
        self.log: list[Instruction] = []

    def feed(self, ev: Event) -> list[Instruction]:
        out = self.st.handle(ev)
        self.log += out
        return out

    def submit(
        self,
        *cands: Candidate,
        known: Iterable[tuple[str, int, int]] = (),
        prior: dict[str, CommittedPages] | None = None,
        room: int = 100,
    ) -> list[Instruction]:
        return self.feed(Submit(list(cands), set(known), prior or {}, room))

    def answer(
        self,
        *done: TaskDone,
        lost: Sequence[Lost] = (),
        known: Iterable[tuple[str, int, int]] = (),
        on_disk: dict[int, tuple[int, int]] | None = None,
    ) -> list[Instruction]:
        return self.feed(Answers(list(done), list(lost), set(known), on_disk or {}))

    def advance(self, room: int = 100) -> list[Instruction]:
        return self.feed(Advance(room))

    def commit(self) -> Commit:
        """Advance, expecting exactly the head batch's Commit."""
        [c] = of(Commit, self.advance())
        return c

    def done(self, c: Commit, ms: float = 2.0) -> list[Instruction]:
        return self.feed(CommitDone(c.batch_id, ms))


def sends(out: Iterable[Instruction]) -> list[Send]:
    return of(Send, out)


def report(out: Iterable[Instruction]) -> Report:
    [r] = of(Report, out)
    return r


@pytest.fixture
def m() -> Machine:
    return Machine()


# -- the usual path --------------------------------------------------------------------


def test_a_batch_is_sent_written_committed_and_reported(m: Machine) -> None:
    """Three files: three tasks on rows 0-2, results, one Commit in row order with nothing
    to move, then (no batch left) the pending tail is cut and the commit reported."""
    a, b, c = cand("a"), cand("b"), cand("c")
    out = m.submit(a, b, c)
    s = sends(out)
    assert [(x.path, x.rows, x.first_page, x.version) for x in s] == [
        ("/in/a.tif", (0,), 0, None),
        ("/in/b.tif", (1,), 0, None),
        ("/in/c.tif", (2,), 0, None),
    ]
    assert m.answer(*(result(x) for x in s)) == []
    commit = m.commit()
    assert commit.moves == ()
    assert [(r.row, r.source, r.page) for r in commit.records] == [
        (0, "/in/a.tif", 0),
        (1, "/in/b.tif", 0),
        (2, "/in/c.tif", 0),
    ]
    assert all(
        r.ingested_at == WALL and (r.size, r.mtime_ns) == (SIZE, MTIME) for r in commit.records
    )
    assert commit.failures == [] and commit.grown == []
    m.now += 0.5
    out = m.done(commit, ms=3.0)
    assert [type(i) for i in out] == [CutPending, Report]
    info = report(out).info
    assert (info.batch_id, info.rows, info.first_row, info.skipped) == (1, 3, 0, 0)
    assert [(c.path, v, n) for c, v, n in info.ingested] == [
        (x.path, (SIZE, MTIME), 1) for x in (a, b, c)
    ]
    assert info.commit_ms == 3.0 and info.batch_ms == pytest.approx(500.0)
    assert m.st.idle() and not m.st.busy


def test_the_next_batch_reserves_after_the_committed_rows() -> None:
    """Row numbers continue from the committed count; after a cut they start there again."""
    m2 = Machine(committed=40)
    [s] = sends(m2.submit(cand("a")))
    assert s.rows == (40,)
    m2.answer(result(s))
    m2.done(m2.commit())
    [s] = sends(m2.submit(cand("b")))
    assert s.rows == (41,)


def test_tasks_are_bounded_by_the_pools_room(m: Machine) -> None:
    """Submit sends only what the pool takes; Advance sends the rest as room frees."""
    out = m.submit(*(cand(f"f{i}") for i in range(5)), room=2)
    assert len(sends(out)) == 2 and m.st.busy
    assert len(sends(m.advance(room=0))) == 0
    assert [x.rows for x in sends(m.advance(room=10))] == [(2,), (3,), (4,)]


def test_an_empty_batch_commits_nothing_but_is_reported(m: Machine) -> None:
    """Every file known: no task, and an empty commit reports the batch (feeders count it)."""
    out = m.submit(cand("a"), known=[("/in/a.tif", SIZE, MTIME)])
    assert out == []
    commit = m.commit()
    assert commit.records == [] and commit.failures == []
    info = report(m.done(commit)).info
    assert info.files == 0 and info.rows == 0


# -- intake rules ----------------------------------------------------------------------


def test_known_versions_are_skipped_and_a_path_in_flight_is_requeued(m: Machine) -> None:
    first = cand("a")
    assert len(sends(m.submit(first))) == 1
    again, other = cand("a", size=200), cand("b")
    out = m.submit(again, other, cand("c"), known=[("/in/c.tif", SIZE, MTIME)])
    assert of(Requeue, out) == [Requeue(again)]
    assert [x.path for x in sends(out)] == ["/in/b.tif"]
    assert m.st.in_flight("/in/a.tif") and m.st.pending_files() == 2


def test_a_path_stays_in_flight_until_its_commit_is_done(m: Machine) -> None:
    [s] = sends(m.submit(cand("a")))
    m.answer(result(s))
    commit = m.commit()
    assert of(Requeue, m.submit(cand("a", size=5))) != []  # committing: still in flight
    m.done(commit)
    assert not m.st.in_flight("/in/a.tif")
    assert sends(m.submit(cand("a", size=6)))


def test_at_most_two_batches_are_open_besides_the_one_committing(m: Machine) -> None:
    assert MAX_OPEN_BATCHES == 2
    [s1] = sends(m.submit(cand("a")))
    assert m.st.can_accept()
    m.submit(cand("b"))
    assert not m.st.can_accept()
    m.answer(result(s1))
    m.commit()  # the head moves to the committer
    assert m.st.can_accept() and m.st.pending_files() == 2 and not m.st.idle()


def test_batches_commit_strictly_in_order(m: Machine) -> None:
    """The second batch finishes first: nothing commits until the head is resolved."""
    [s1] = sends(m.submit(cand("a")))
    [s2] = sends(m.submit(cand("b")))
    m.answer(result(s2))
    assert of(Commit, m.advance()) == []
    m.answer(result(s1))
    c1 = m.commit()
    assert c1.batch_id == 1 and [r.source for r in c1.records] == ["/in/a.tif"]
    assert of(Commit, m.advance()) == []  # one commit at a time
    out = m.done(c1)
    assert of(CutPending, out) == []  # batch 2's row is still pending
    c2 = m.commit()
    # Batch 2's row was reserved after batch 1's: already the next row.
    assert c2.batch_id == 2 and c2.moves == () and [r.row for r in c2.records] == [1]


def test_submit_after_stop_is_refused(m: Machine) -> None:
    assert m.feed(Stop()) == []
    with pytest.raises(RuntimeError):
        m.submit(cand("a"))


def test_stop_waits_for_the_commit_in_flight(m: Machine) -> None:
    [s] = sends(m.submit(cand("a")))
    m.answer(result(s))
    commit = m.commit()
    assert m.feed(Stop()) == [WaitCommit()]
    assert report(m.done(commit)).info.rows == 1 and m.st.idle()


def test_a_commit_done_for_another_batch_is_an_error(m: Machine) -> None:
    with pytest.raises(RuntimeError):
        m.feed(CommitDone(7, 1.0))


# -- holes and swaps at gather ---------------------------------------------------------


def test_a_failed_file_is_a_hole_filled_by_the_batchs_last_row(m: Machine) -> None:
    s = sends(m.submit(cand("a"), cand("bad"), cand("c")))
    m.answer(result(s[0]), failure(s[1]), result(s[2]))
    commit = m.commit()
    assert commit.moves == (MoveRow(2, 1),)
    assert [(r.row, r.source) for r in commit.records] == [(0, "/in/a.tif"), (1, "/in/c.tif")]
    [f] = commit.failures
    assert (f.source, f.size, f.mtime_ns, f.reason, f.at) == (
        "/in/bad.tif",
        SIZE,
        MTIME,
        "corrupt",
        WALL,
    )
    info = report(m.done(commit)).info
    assert [c.path for c, _ in info.failed] == ["/in/bad.tif"] and info.rows == 2


def test_interleaved_multi_page_files_are_swapped_into_order() -> None:
    """A 3-page stack in tasks of 2 pages: its last page is reserved after the next
    batch's rows, so the gather swaps it with that batch's page, which follows its row."""
    m = Machine(chunk=2)
    [s1] = sends(m.submit(cand("stack")))
    [s2] = sends(m.submit(cand("b")))
    assert (s1.rows, s2.rows) == ((0, 1), (2, 3))  # versions unknown: a whole chunk each
    assert m.answer(result(s1, pages=2, total=3), result(s2)) == []  # row 3: a hole
    [s3] = sends(m.advance())  # the stack's last page: one row, its version known now
    assert (s3.first_page, s3.rows, s3.version, s3.prefix) == (2, (4,), (SIZE, MTIME), ())
    m.answer(result(s3))
    c1 = m.commit()
    assert c1.moves == (SwapRows(4, 2),)
    assert [(r.row, r.source, r.page) for r in c1.records] == [
        (0, "/in/stack.tif", 0),
        (1, "/in/stack.tif", 1),
        (2, "/in/stack.tif", 2),
    ]
    assert m.st.rows.written[4].job.cand.path == "/in/b.tif"
    m.done(c1)
    c2 = m.commit()
    assert c2.moves == (MoveRow(4, 3),)  # b's page, now at 4, into the hole at 3
    assert [(r.row, r.source) for r in c2.records] == [(3, "/in/b.tif")]
    assert of(CutPending, m.done(c2)) == [CutPending()]


def test_a_target_row_still_being_written_blocks_the_gather() -> None:
    """The head's rows must swap with a row a later batch's task still writes: no commit
    until that task has answered."""
    m = Machine(chunk=2)
    [s1] = sends(m.submit(cand("stack")))
    [s2] = sends(m.submit(cand("b")))
    m.answer(result(s1, pages=2, total=3))
    [s3] = sends(m.advance())
    m.answer(result(s3))  # the head is resolved, at rows 0, 1 and 4; row 2 is b's task's
    assert m.st.batches[0].resolved()
    assert of(Commit, m.advance()) == []
    m.answer(result(s2))
    assert m.commit().moves == (SwapRows(4, 2),)


def test_a_file_failing_after_its_first_pages_leaves_holes() -> None:
    """Its written pages become holes (taken back), and the failure keeps its version."""
    m = Machine(chunk=2)
    s1, sb = sends(m.submit(cand("stack"), cand("b")))
    m.answer(result(s1, pages=2, total=3), result(sb))
    [s3] = sends(m.advance())
    m.answer(failure(s3, "decoder_error"))
    commit = m.commit()
    assert commit.moves == (MoveRow(2, 0),)
    assert [(r.row, r.source) for r in commit.records] == [(0, "/in/b.tif")]
    assert [(f.source, f.reason) for f in commit.failures] == [("/in/stack.tif", "decoder_error")]


def test_a_page_that_yields_no_image_fails_the_file_as_corrupt(m: Machine) -> None:
    [s] = sends(m.submit(cand("a")))
    m.answer(result(s, pages=0, total=1))
    [f] = m.commit().failures
    assert (f.reason, f.detail) == ("corrupt", "page 0 yielded no image")


# -- crashes and timeouts ----------------------------------------------------------------


def test_a_crash_is_retried_once_then_recorded_with_the_version_on_disk(m: Machine) -> None:
    assert MAX_CRASH_ATTEMPTS == 2
    [s] = sends(m.submit(cand("victim")))
    assert m.answer(lost=[lost(s)]) == []
    [again] = sends(m.advance())
    assert (again.path, again.first_page, again.rows) == (s.path, 0, (1,))
    assert again.task_id != s.task_id
    m.answer(lost=[lost(again)], on_disk={again.task_id: (55, 66)})
    assert sends(m.advance()) == []
    [commit] = of(Commit, m.log)
    assert commit.records == []
    [f] = commit.failures
    assert (f.reason, f.size, f.mtime_ns) == ("decoder_crash", 55, 66)


def test_a_lost_file_that_is_gone_is_recorded_at_version_minus_one(m: Machine) -> None:
    [s] = sends(m.submit(cand("gone")))
    m.answer(lost=[lost(s, "timeout")])
    [f] = m.commit().failures
    assert (f.reason, f.size, f.mtime_ns) == ("timeout", -1, -1)


def test_a_timeout_is_not_retried(m: Machine) -> None:
    [s] = sends(m.submit(cand("stuck")))
    m.answer(lost=[lost(s, "timeout")], on_disk={s.task_id: (SIZE, MTIME)})
    assert sends(m.log[1:]) == []
    [f] = m.commit().failures
    assert (f.reason, f.detail, f.size) == ("timeout", "timeout detail", SIZE)


def test_a_crash_inside_a_bundle_costs_only_its_task_which_goes_first(m: Machine) -> None:
    """Answers and a loss in one round: the others' rows stand, the crashed file is sent
    again ahead of the files still waiting, and the gather moves its row into its hole."""
    s = sends(m.submit(*(cand(f"f{i}") for i in range(6)), room=4))
    m.answer(result(s[0]), result(s[1]), result(s[3]), lost=[lost(s[2])])
    retry, f4 = sends(m.advance(room=2))
    assert (retry.path, retry.rows, f4.path) == ("/in/f2.tif", (4,), "/in/f4.tif")
    [f5] = sends(m.advance())
    m.answer(result(retry), result(f4), result(f5))
    commit = m.commit()
    # Rows are positional, not in file order: the batch's last row fills the hole.
    assert commit.moves == (MoveRow(6, 2),)
    assert [r.source[4:6] for r in commit.records] == ["f0", "f1", "f5", "f3", "f2", "f4"]


def test_a_crash_after_the_first_chunk_fails_with_the_version_read() -> None:
    m = Machine(chunk=2)
    [s1] = sends(m.submit(cand("stack")))
    m.answer(result(s1, pages=2, total=4))
    [s2] = sends(m.advance())
    assert s2.version == (SIZE, MTIME)
    m.answer(lost=[lost(s2, "timeout")])
    commit = m.commit()
    assert commit.records == []
    [f] = commit.failures
    assert (f.size, f.mtime_ns, f.reason) == (SIZE, MTIME, "timeout")


def test_started_files_are_sent_before_waiting_ones() -> None:
    m = Machine(chunk=1)
    [s] = sends(m.submit(cand("stack"), cand("b"), room=1))
    m.answer(result(s, pages=1, total=2))
    [nxt] = sends(m.advance(room=1))
    assert (nxt.path, nxt.first_page, nxt.rows) == ("/in/stack.tif", 1, (1,))


# -- skips and failures before decode ------------------------------------------------------


def test_a_file_read_at_a_known_version_is_a_skip(m: Machine) -> None:
    """The worker read another version than the feeder saw, and the index has it: the
    file is skipped and its row is a hole."""
    [s] = sends(m.submit(cand("a")))
    done = [result(s, size=999)]
    assert m.st.versions_to_check(done) == [("/in/a.tif", 999, MTIME)]
    m.answer(*done, known={("/in/a.tif", 999, MTIME)})
    commit = m.commit()
    assert commit.records == [] and commit.failures == []
    info = report(m.done(commit)).info
    assert (info.skipped, info.files, info.ingested) == (1, 1, [])


def test_a_file_read_at_an_unknown_new_version_becomes_rows_of_it(m: Machine) -> None:
    [s] = sends(m.submit(cand("a")))
    m.answer(result(s, size=999))
    [r] = m.commit().records
    assert (r.size, r.mtime_ns) == (999, MTIME)


def test_only_first_chunks_read_at_another_version_are_looked_up() -> None:
    m = Machine(chunk=1)
    s = sends(m.submit(cand("a"), cand("b"), cand("c", size=None, mtime=None), cand("d")))
    done = [result(s[0]), result(s[1], size=5), result(s[2], total=2), failure(s[3])]
    assert m.st.versions_to_check(done) == [
        ("/in/b.tif", 5, MTIME),
        ("/in/c.tif", SIZE, MTIME),  # the feeder did not stat it
    ]
    m.answer(*done)
    [cont] = sends(m.advance())
    assert m.st.versions_to_check([result(cont, size=1)]) == []  # its version is fixed


def test_a_file_refused_before_it_was_opened_keeps_the_version_the_feeder_saw(
    m: Machine,
) -> None:
    s = sends(m.submit(cand("fifo"), cand("unseen", size=None, mtime=None)))
    m.answer(failure(s[0], "not_regular", -1, -1), failure(s[1], "not_regular", -1, -1))
    f1, f2 = m.commit().failures
    assert (f1.size, f1.mtime_ns) == (SIZE, MTIME)
    assert (f2.size, f2.mtime_ns) == (-1, -1)


def test_the_same_path_twice_in_one_batch_is_decoded_once(m: Machine) -> None:
    first, second = cand("a"), cand("a", size=3)
    out = m.submit(first, second)
    assert len(sends(out)) == 1 and of(Requeue, out) == [Requeue(second)]


# -- grown files -----------------------------------------------------------------------------


def test_a_grown_file_is_sent_its_committed_digests_and_adds_only_new_pages() -> None:
    m = Machine(chunk=4)
    prior = CommittedPages((50, 5), ("d0", "d1"))
    [s] = sends(m.submit(cand("stack"), prior={"/in/stack.tif": prior}))
    assert (s.first_page, s.prefix) == (0, ("d0", "d1"))
    m.answer(result(s, pages=2, total=4, prefix=2))
    commit = m.commit()
    assert [(r.row, r.page, r.page_hash) for r in commit.records] == [(0, 2, "d2"), (1, 3, "d3")]
    [g] = commit.grown
    assert (g.source, g.size, g.mtime_ns, g.base_size, g.base_mtime_ns) == (
        "/in/stack.tif",
        SIZE,
        MTIME,
        50,
        5,
    )
    assert (g.first_page, g.pages, g.at) == (2, 4, WALL)
    [(c, version, pages)] = report(m.done(commit)).info.ingested
    assert (c.path, version, pages) == ("/in/stack.tif", (SIZE, MTIME), 4)


def test_a_grown_files_later_chunks_carry_no_digests() -> None:
    m = Machine(chunk=2)
    prior = CommittedPages((50, 5), ("d0",))
    [s] = sends(m.submit(cand("stack"), prior={"/in/stack.tif": prior}))
    m.answer(result(s, pages=2, total=4, prefix=1))
    [cont] = sends(m.advance())
    assert (cont.first_page, cont.prefix, cont.rows) == (3, (), (2,))
    m.answer(result(cont))
    commit = m.commit()
    assert [r.page for r in commit.records] == [1, 2, 3]
    assert [(g.first_page, g.pages) for g in commit.grown] == [(1, 4)]


def test_a_grown_file_with_no_new_page_adds_no_row_and_is_recorded() -> None:
    m = Machine(chunk=2)
    prior = CommittedPages((50, 5), ("d0", "d1"))
    [s] = sends(m.submit(cand("same"), prior={"/in/same.tif": prior}))
    m.answer(result(s, pages=0, total=2, prefix=2))
    commit = m.commit()
    assert commit.records == [] and commit.failures == []
    assert [(g.first_page, g.pages) for g in commit.grown] == [(2, 2)]
    assert report(m.done(commit)).info.ingested[0][2] == 2


def test_a_version_that_does_not_begin_with_the_committed_pages_is_whole() -> None:
    m = Machine(chunk=2)
    prior = CommittedPages((50, 5), ("d0",))
    [s] = sends(m.submit(cand("changed"), prior={"/in/changed.tif": prior}))
    m.answer(result(s, pages=2, total=2, prefix=0))
    commit = m.commit()
    assert [r.page for r in commit.records] == [0, 1] and commit.grown == []


# -- a full disk -------------------------------------------------------------------------------


def test_a_workers_disk_full_requeues_every_open_file_then_cuts_after_the_drain(
    m: Machine,
) -> None:
    a, b, c = cand("a"), cand("b"), cand("c")
    s1 = sends(m.submit(a, b))
    [s3] = sends(m.submit(c))
    out = m.answer(failure(s1[0], "dataset_full"), failure(s3, "dataset_full"))
    assert out == [RowWriteFailed(True, "dataset_full detail")]  # the first of the round
    out = m.feed(DiskFull("ENOSPC writing rows"))
    assert out == [Requeue(a), Requeue(b), Requeue(c), Drain()]
    assert m.st.busy and not m.st.in_flight(a.path) and not m.st.batches
    # The task still out answers; its batch is gone, so the answer changes nothing.
    assert m.answer(result(s1[1])) == []
    assert not m.st.busy
    assert m.feed(Drained()) == [CutPending(), PauseIntake(3, "ENOSPC writing rows")]
    assert m.st.idle() and m.advance() == []
    [again] = sends(m.submit(a))
    assert again.rows == (0,)  # the pending rows were cut: reserved from the committed again


def test_a_disk_full_waits_for_the_commit_in_flight_which_may_succeed(m: Machine) -> None:
    a, b = cand("a"), cand("b")
    [s1] = sends(m.submit(a))
    m.answer(result(s1))
    c1 = m.commit()
    [s2] = sends(m.submit(b))
    assert m.answer(failure(s2, "dataset_full")) == [RowWriteFailed(True, "dataset_full detail")]
    assert m.feed(DiskFull("full")) == [WaitCommit()]
    out = m.done(c1)
    assert [type(i) for i in out] == [Report, Requeue, CutPending, PauseIntake]
    assert report(out).info.rows == 1
    assert out[1] == Requeue(b) and out[-1] == PauseIntake(1, "full")


def test_a_commit_that_meets_a_full_disk_requeues_its_files_first(m: Machine) -> None:
    a, b = cand("a"), cand("b")
    [s1] = sends(m.submit(a))
    m.answer(result(s1))
    c1 = m.commit()
    [s2] = sends(m.submit(b))
    out = m.feed(CommitFailed(c1.batch_id, "SQLITE_FULL"))
    assert out == [Requeue(a), Requeue(b), Drain()]
    assert m.answer(lost=[lost(s2)]) == []  # a loss in an undone batch is no retry
    assert m.feed(Drained()) == [CutPending(), PauseIntake(2, "SQLITE_FULL")]
    assert m.st.idle() and not m.st.in_flight(a.path)


def test_a_commit_failing_after_a_disk_full_keeps_the_first_detail(m: Machine) -> None:
    a = cand("a")
    [s1] = sends(m.submit(a))
    m.answer(result(s1))
    c1 = m.commit()
    assert m.feed(DiskFull("the first")) == [WaitCommit()]
    out = m.feed(CommitFailed(c1.batch_id, "the second"))
    assert out == [Requeue(a), CutPending(), PauseIntake(1, "the first")]


def test_an_io_error_writing_rows_is_handed_out_once_per_round(m: Machine) -> None:
    s = sends(m.submit(cand("a"), cand("b")))
    out = m.answer(failure(s[0], "dataset_io_error"), failure(s[1], "dataset_full"))
    assert out == [RowWriteFailed(False, "dataset_io_error detail")]
    # Not the files' fault: both go again first.
    assert [x.path for x in sends(m.advance())] == ["/in/b.tif", "/in/a.tif"]
