"""The lease that makes one publisher the only writer of a target.

`tiffsink/lease.json` names its holder (host, PID, local dataset), a random token and an
expiry. It is created only if absent and renewed only if unchanged since we wrote it
(If-None-Match / If-Match on S3, an flock-guarded compare on `file://`), so two
publishers can never both hold it. A holder that died (kill -9, power cut) blocks the
target until the expiry; one on the same host for the same dataset is known dead once
its successor holds the dataset's local publish lock, and is taken over at once.
A write whose outcome was unknown (a timeout) may have landed: our own token in the
lease then means we hold it.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..dataset.remote.keys import LEASE
from ..dataset.remote.target import Target
from ..errors import PublishHeldError


class Lease:
    """This process's claim on one target."""

    def __init__(
        self,
        target: Target,
        dataset: str,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target, self.ttl_s, self.clock = target, ttl_s, clock
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "dataset": dataset}
        self.token = uuid.uuid4().hex
        self.tag: str | None = None
        self.expires = 0.0

    def _doc(self, expires: float) -> bytes:
        return json.dumps({"owner": self.owner, "token": self.token, "expires": expires}).encode()

    def acquire(self) -> None:
        """Hold the lease; PublishHeldError naming the holder if another publisher does."""
        expires = self.clock() + self.ttl_s
        tag = self.target.create(LEASE, self._doc(expires))
        if tag is None:
            tag = self._take_over(expires)
        self.tag, self.expires = tag, expires

    def _take_over(self, expires: float) -> str:
        got = self.target.get_versioned(LEASE)
        if got is None:  # released meanwhile
            tag = self.target.create(LEASE, self._doc(expires))
            if tag is None:
                raise PublishHeldError(self.target.url, "another publisher took the lease just now")
            return tag
        held: dict[str, Any] = json.loads(got[0])
        if held.get("token") == self.token:
            return got[1]  # our own create, whose answer was lost
        mine = {k: held.get("owner", {}).get(k) for k in ("host", "dataset")}
        same_place = mine == {k: self.owner[k] for k in ("host", "dataset")}
        if held.get("expires", 0) > self.clock() and not same_place:
            who = held.get("owner", {})
            raise PublishHeldError(
                self.target.url,
                f"publisher PID {who.get('pid')} on {who.get('host')} (dataset "
                f"{who.get('dataset')}) holds the lease for another "
                f"{held['expires'] - self.clock():.0f} s; one target takes one publisher",
            )
        tag = self.target.replace_if(LEASE, self._doc(expires), got[1])
        if tag is None:
            raise PublishHeldError(self.target.url, "another publisher took the lease just now")
        return tag

    def renew_if_due(self) -> None:
        """Extend the lease once a third of it is spent; PublishHeldError if it was lost."""
        now = self.clock()
        if self.tag is None or now < self.expires - 2 * self.ttl_s / 3:
            return
        expires = now + self.ttl_s
        tag = self.target.replace_if(LEASE, self._doc(expires), self.tag)
        if tag is None:
            got = self.target.get_versioned(LEASE)
            if got is None or json.loads(got[0]).get("token") != self.token:
                self.tag = None
                raise PublishHeldError(self.target.url, "the lease was lost to another publisher")
            tag = self.target.replace_if(LEASE, self._doc(expires), got[1])
            if tag is None:
                raise PublishHeldError(self.target.url, "the lease was lost to another publisher")
        self.tag, self.expires = tag, expires

    def release(self) -> None:
        """Let the next publisher in at once (an expired lease, written only if still ours)."""
        if self.tag is not None:
            self.target.replace_if(LEASE, self._doc(0.0), self.tag)
            self.tag = None
