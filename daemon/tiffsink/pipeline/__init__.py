"""The pipeline stage: batches in, committed rows out, with decoding in worker processes.

`pipeline.Pipeline` is the supervisor's side: a thin shell around `state.SupervisorState`,
the state machine that alone keeps the files in flight (events in, instructions out).
`pool` and `worker` are the two ends of the process boundary, `messages` what crosses it
(metadata only), `arena` the workers' heartbeats, and `committer` the commit thread.
"""

from .pipeline import Pipeline

__all__ = ["Pipeline"]
