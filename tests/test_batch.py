"""The batcher: a batch closes at max_files or max_wait_ms after its first file."""

from __future__ import annotations

from tiffsink.batch import Batcher, Candidate


class Clock:
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def cand(name: str, seen_at: float = 0.0) -> Candidate:
    return Candidate(f"/in/{name}", "/in", 1, 1, seen_at=seen_at)


def test_empty_batcher_is_never_ready_and_has_no_deadline() -> None:
    """Nothing waiting: no batch is due, not even on flush, and there is no deadline."""
    b = Batcher(4, 1000, clock=Clock())
    assert not b.ready() and not b.ready(flush=True)
    assert b.deadline() is None


def test_ready_when_max_files_are_waiting() -> None:
    """The max_files-th file makes a batch due at once, before the wait expires."""
    b = Batcher(3, 1000, clock=Clock())
    for i in range(2):
        b.add(cand(f"{i}.tif"))
    assert not b.ready()
    b.add(cand("2.tif"))
    assert b.ready()


def test_ready_when_the_first_files_wait_expires() -> None:
    """A lone file is due max_wait_ms after it arrived, not before."""
    clock = Clock()
    b = Batcher(64, 250, clock=clock)
    b.add(cand("a.tif"))
    assert b.deadline() == 100.25
    clock.t = 100.249
    assert not b.ready()
    clock.t = 100.25
    assert b.ready()


def test_flush_makes_any_waiting_file_due() -> None:
    """flush (end of a backfill, a stop) closes a batch of one without waiting."""
    b = Batcher(64, 10_000, clock=Clock())
    b.add(cand("a.tif"))
    assert not b.ready() and b.ready(flush=True)


def test_take_returns_oldest_first_up_to_max_files() -> None:
    """take() gives at most max_files files in arrival order; the rest keep waiting."""
    b = Batcher(2, 1000, clock=Clock())
    for name in ("a", "b", "c"):
        b.add(cand(name))
    assert [c.path for c in b.take()] == ["/in/a", "/in/b"]
    assert [c.path for c in b.take()] == ["/in/c"]
    assert len(b) == 0


def test_deadline_restarts_for_files_left_after_take() -> None:
    """Files left behind by take() get a fresh max_wait from the take, not the old one."""
    clock = Clock()
    b = Batcher(1, 500, clock=clock)
    b.add(cand("a"))
    b.add(cand("b"))
    clock.t = 103.0
    b.take()
    assert b.deadline() == 103.5
    b.take()
    assert b.deadline() is None


def test_a_second_sighting_replaces_in_place_and_keeps_the_earliest_seen_at() -> None:
    """A path already waiting is kept once, in its place, with its first arrival time."""
    b = Batcher(10, 1000, clock=Clock())
    b.add(cand("a", seen_at=5.0))
    b.add(cand("b", seen_at=6.0))
    newer = Candidate("/in/a", "/in", 2, 2, seen_at=9.0)
    b.add(newer)
    got = b.take()
    assert [c.path for c in got] == ["/in/a", "/in/b"]
    assert got[0].size == 2 and got[0].seen_at == 5.0
