"""The publish stage: committed rows to object storage, continuously and exactly once.

`plan` says which shards a round sends, `lease` keeps a target to one publisher,
`publisher` runs the remote protocol (shards, then index objects, then the shape), and
`follow` runs it through outages. The remote layout and the reader are the dataset's
(`dataset/remote/`).
"""

from .follow import Follower
from .publisher import Publisher, PublishState

__all__ = ["Follower", "PublishState", "Publisher"]
