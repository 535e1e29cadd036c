"""The daemon's publisher: a `publish.Follower` in its own thread, beside ingestion.

It reads only committed rows (its own read-only view of the dataset), so the pipeline
never waits for the network; outages are retried inside the follower for as long as
they last. Health sees its state: a refusal (the target is held, or holds another
dataset) or a lag past `[publish] max_lag_s` fails /healthz, and /metrics shows the lag,
the bytes sent and the errors.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import structlog

from ..config import PublishConfig
from ..errors import PublishError
from ..publish import Follower, Publisher, PublishState

log = structlog.get_logger("tiffsink")


class PublishThread:
    """Publishes the dataset at `dataset` to `[publish] target` until closed."""

    def __init__(self, cfg: PublishConfig, dataset: Path) -> None:
        self.cfg = cfg
        self.stopping = threading.Event()
        self.refused: str | None = None
        self.follower = Follower(
            lambda: Publisher(dataset, cfg.target, cfg.tail_interval_ms / 1000, cfg.lease_s),
            dataset,
            follow=True,
            wait=self.stopping.wait,
        )
        self.thread = threading.Thread(target=self._run, name="tiffsink-publisher", daemon=True)

    def start(self) -> PublishThread:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self.follower.run()
        except PublishError as e:
            self.refused = str(e)
            log.error("publish.refused", detail=str(e), action="fix [publish] target, restart")

    @property
    def state(self) -> PublishState | None:
        return self.follower.state

    def problem(self) -> str | None:
        """Why publishing is not healthy, or None."""
        if self.refused is not None:
            return f"publishing refused: {self.refused}"
        if not self.thread.is_alive() and not self.stopping.is_set():
            return "publisher thread is not running"
        st = self.state
        if st is not None and st.lag_s > self.cfg.max_lag_s:
            why = f"; last error: {st.last_error}" if st.last_error else ""
            return (
                f"publishing lags {st.lag_s:.0f} s ({st.lag_rows} rows) behind, past "
                f"[publish] max_lag_s = {self.cfg.max_lag_s}{why}"
            )
        return None

    def status(self) -> dict[str, Any]:
        st = self.state
        out: dict[str, Any] = {"target": self.cfg.target, "problem": self.problem()}
        if st is not None:
            out |= {
                "remote_rows": st.remote_rows,
                "lag_rows": st.lag_rows,
                "lag_s": round(st.lag_s, 1),
                "bytes_sent": st.bytes_sent,
                "errors": self.follower.errors,
                "last_error": self.follower.last_error or None,
            }
        return out

    def close(self) -> None:
        """Stop after the round in flight, releasing the lease."""
        self.stopping.set()
        self.thread.join(60)
