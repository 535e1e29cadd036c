"""Run a publisher until it has caught up, or for as long as the daemon runs.

An outage is a state, not an end: every error but a refusal (`PublishError`: the target
is held or holds another dataset) is counted, logged (throttled) and retried with
backoff, for hours if need be, while the local dataset keeps growing. When the network
returns, the publisher resumes from the remote shape it finds and catches up.

What it has done is written to `DATASET/publish.json` after each round, so `tiffsink
status` shows the lag of any publisher (the daemon's or `tiffsink publish --follow`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import structlog

from ..dataset.layout import Layout
from ..errors import DatasetError, DatasetFullError, PublishError
from ..logthrottle import throttle
from .publisher import Publisher, PublishState

log = structlog.get_logger("tiffsink")

BACKOFF_S = (0.5, 30.0)  # first retry after an error, and the most between retries
POLL_S = 0.5  # how often a follower looks for newly committed rows


class Follower:
    """Drives one `Publisher` (made by `make`, again after it failed to start)."""

    def __init__(
        self,
        make: Callable[[], Publisher],
        dataset: Path,
        follow: bool,
        wait: Callable[[float], bool],
    ) -> None:
        self.make, self.dataset, self.follow, self.wait = make, dataset, follow, wait
        self.publisher: Publisher | None = None
        self.state: PublishState | None = None
        self.errors = 0
        self.last_error = ""

    def run(self) -> PublishState:
        """Until caught up (or, following, until `wait` says stop); returns what was done.
        Raises PublishError for a refusal; every other error is retried."""
        delay = BACKOFF_S[0]
        try:
            while True:
                try:
                    sent = self._round()
                except PublishError:
                    raise
                except Exception as e:  # an outage, a timeout, a full share: retry
                    self._failed(e)
                    if self.wait(delay):
                        break
                    delay = min(BACKOFF_S[1], delay * 2)
                    continue
                delay = BACKOFF_S[0]
                st = self.state
                assert st is not None
                if sent:
                    continue
                if not self.follow and st.remote_rows >= st.local_rows:
                    break
                if self.wait(POLL_S):
                    break
        finally:
            self._close()
        assert self.state is not None
        return self.state

    def _round(self) -> int:
        if self.publisher is None:
            try:
                pub = self.make()
            except DatasetError as e:  # no dataset there: no retry makes one
                if isinstance(e, DatasetFullError):
                    raise
                raise PublishError(e.path, e.reason) from e
            try:
                pub.start()
            except BaseException:
                pub.close()
                raise
            self.publisher = pub
            if self.state is not None:  # carry the counts over a restart
                pub.state.bytes_sent += self.state.bytes_sent
                pub.state.objects_sent += self.state.objects_sent
            self.state = pub.state
            log.info("publish.started", target=pub.target.url, remote_rows=pub.state.remote_rows)
        sent = self.publisher.step(force_tail=not self.follow)
        if sent:
            log.debug("publish.round", rows=sent, remote_rows=self.publisher.state.remote_rows)
        self._save()
        return sent

    def _failed(self, e: Exception) -> None:
        self.errors += 1
        self.last_error = f"{type(e).__name__}: {e}"
        if self.state is not None:
            self.state.errors, self.state.last_error = self.errors, self.last_error
        throttle.warning("publish.failed", by="kind", kind=type(e).__name__, detail=str(e))
        if self.publisher is not None and self.publisher.lease.tag is None:
            self._close()  # the lease is gone: start over (acquire it again)
        self._save()

    def _save(self) -> None:
        if self.state is None:
            return
        doc = {**asdict(self.state), "lag_rows": self.state.lag_rows, "pid": os.getpid()}
        # A progress note, not state (a torn one reads as none): never a reason to stop.
        with contextlib.suppress(OSError):
            Layout.of(self.dataset).publish_state.write_text(json.dumps(doc))

    def _close(self) -> None:
        if self.publisher is not None:
            try:
                self.publisher.close()
            except Exception as e:  # the lease expires by itself
                log.warning("publish.release_failed", detail=str(e))
            self.publisher = None
