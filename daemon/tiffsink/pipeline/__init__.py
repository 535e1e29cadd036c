"""The pipeline stage: batches in, committed rows out, with decoding in worker processes.

`pipeline.Pipeline` is the supervisor's side; `pool` and `worker` are the two ends of
the process boundary, `messages` what crosses it and `arena` the shared-memory slots
the pixels cross in.
"""

from .jobs import CommitInfo
from .pipeline import Pipeline

__all__ = ["CommitInfo", "Pipeline"]
