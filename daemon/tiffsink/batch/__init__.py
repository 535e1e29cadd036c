"""The batch stage: ready files grouped into batches, the unit of commit."""

from .batcher import Batcher
from .candidate import Candidate

__all__ = ["Batcher", "Candidate"]
