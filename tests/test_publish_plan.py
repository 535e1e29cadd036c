"""The publisher's pure parts: which shards a round sends, and the lease that keeps a
target to one publisher (on a real file:// target, with a test clock)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiffsink.dataset.remote import keys
from tiffsink.dataset.remote.target import open_target
from tiffsink.errors import PublishHeldError
from tiffsink.publish.lease import Lease
from tiffsink.publish.plan import ShardSend, plan, reached


def test_full_shards_go_first_and_the_tail_only_when_due() -> None:
    """From the remote's shard on: every full local shard, then the partial one if due."""
    assert plan(0, 10, 4, 8, tail_due=False) == [ShardSend(0, 4, True), ShardSend(1, 4, True)]
    assert plan(0, 10, 4, 8, tail_due=True)[-1] == ShardSend(2, 2, False)


def test_a_partial_remote_shard_is_completed_whole() -> None:
    """With 5 of shard 1's rows published, the round resends shard 1 whole, full."""
    sends = plan(5, 9, 4, 8, tail_due=False)
    assert sends == [ShardSend(1, 4, True)] and reached(sends, 4) == 8


def test_a_round_is_bounded_whatever_the_backlog() -> None:
    """10,000 rows behind, a round still sends at most `max_shards` shards."""
    sends = plan(0, 10_000, 64, 4, tail_due=True)
    assert [s.shard for s in sends] == [0, 1, 2, 3] and reached(sends, 64) == 256


def test_nothing_is_sent_when_caught_up_or_only_an_unchanged_tail_remains() -> None:
    """Caught up: no round; a tail already published whole: nothing to replace."""
    assert plan(10, 10, 4, 8, tail_due=True) == []
    assert plan(8, 8, 4, 8, tail_due=True) == []


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def lease(tmp: Path, clock: Clock, dataset: str = "/data/a") -> Lease:
    target = open_target(f"file://{tmp / 'target'}")
    return Lease(target, dataset, ttl_s=60, clock=clock)


def test_a_held_lease_refuses_a_second_publisher_naming_the_holder(tmp_path: Path) -> None:
    """The second publisher of another dataset is refused while the lease runs."""
    clock = Clock()
    lease(tmp_path, clock).acquire()
    with pytest.raises(PublishHeldError, match="holds the lease for another 60 s"):
        lease(tmp_path, clock, "/data/b").acquire()


def test_an_expired_lease_is_taken_over(tmp_path: Path) -> None:
    """A publisher that died stops blocking the target once its lease expires."""
    clock = Clock()
    lease(tmp_path, clock).acquire()
    clock.t += 61
    second = lease(tmp_path, clock, "/data/b")
    second.acquire()
    doc = json.loads((tmp_path / "target" / keys.LEASE).read_text())
    assert doc["owner"]["dataset"] == "/data/b" and doc["token"] == second.token


def test_a_renewal_after_a_takeover_finds_the_lease_lost(tmp_path: Path) -> None:
    """A publisher whose lease was taken over (it stalled past expiry) stops writing."""
    clock = Clock()
    first = lease(tmp_path, clock)
    first.acquire()
    clock.t += 61
    lease(tmp_path, clock, "/data/b").acquire()
    with pytest.raises(PublishHeldError, match="lost"):
        first.renew_if_due()


def test_a_released_lease_lets_the_next_publisher_in_at_once(tmp_path: Path) -> None:
    """Release writes an expired lease: the next publisher need not wait."""
    clock = Clock()
    first = lease(tmp_path, clock)
    first.acquire()
    first.release()
    lease(tmp_path, clock, "/data/b").acquire()


def test_the_same_dataset_on_the_same_host_takes_over_a_dead_holders_lease(tmp_path: Path) -> None:
    """A restarted publisher (it holds the dataset's local publish lock, so the old one
    is dead) takes its predecessor's unexpired lease at once."""
    clock = Clock()
    lease(tmp_path, clock).acquire()
    lease(tmp_path, clock).acquire()  # a new token, the same host and dataset


def test_a_publish_lag_past_the_bound_fails_health_but_not_the_watchdog(tmp_path: Path) -> None:
    """Unpublished rows older than max_lag_s make /healthz unhealthy, naming the lag and
    the last error; systemd's watchdog is still fed (the daemon ingests on)."""
    from tiffsink.config import PublishConfig
    from tiffsink.publish import PublishState
    from tiffsink.service.health import Health
    from tiffsink.service.publishing import PublishThread

    pt = PublishThread(PublishConfig(target="s3://b/p", max_lag_s=600), tmp_path)
    health = Health()
    health.attach_publisher(pt)
    pt.stopping.set()  # never started: only its state is under test
    pt.follower.state = PublishState("s3://b/p", remote_rows=10, local_rows=25, lag_s=601)
    pt.follower.state.last_error = "GenericError: tcp connect error"
    assert health.problem() == (
        "publishing lags 601 s (15 rows) behind, past [publish] max_lag_s = 600; "
        "last error: GenericError: tcp connect error"
    )
    assert health.progressing()
    assert b"tiffsink_publish_lag_rows 15.0" in health.metrics.render()
    pt.follower.state.lag_s = 5
    assert health.problem() is None
