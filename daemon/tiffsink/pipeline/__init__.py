"""The pipeline stage: batches in, committed rows out, with decoding in worker processes.

`pipeline.Pipeline` is the supervisor's side: a thin shell around `state.SupervisorState`,
the state machine that alone keeps the files in flight (events in, instructions out).
`pool` and `worker` are the two ends of the process boundary, `messages` what crosses it
(metadata only), `arena` the workers' heartbeats, and `committer` the commit thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pipeline import Pipeline

__all__ = ["Pipeline"]


def __getattr__(name: str) -> Any:
    """`Pipeline` on first use: a worker process imports only `worker` and what it needs."""
    if name != "Pipeline":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .pipeline import Pipeline

    globals()[name] = Pipeline
    return Pipeline
