"""The pipeline stage: batches in, committed rows out, with decoding in worker processes.

`pipeline.Pipeline` is the supervisor's side; `pool` and `worker` are the two ends of
the process boundary, `messages` what crosses it (metadata only), `arena` the slots
workers decode into, and `rowmap` the pending dataset rows workers write their pages to.
"""

from .jobs import CommitInfo
from .pipeline import Pipeline

__all__ = ["CommitInfo", "Pipeline"]
