"""Files seen without a close event are ready once their size and mtime hold still.

A scan, a polling observer (NFS/SMB) or a file moved in from outside the watch gives no
close event to wait for; such a file is ready after `settle_ms` with the same size and
mtime. Files inotify saw being written and not yet closed never settle: a writer pausing
between chunks is not a finished file, its close event decides.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable, Collection


def _lstat(path: str) -> os.stat_result:
    return os.stat(path, follow_symlinks=False)


class Settler:
    """Watches candidate files until they are quiet; runs in the service loop's thread.

    The clocks and stat are injectable so the rules can be tested without files or sleeps.
    """

    def __init__(
        self,
        settle_ms: int,
        trust_mtime: bool,
        clock: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
        stat: Callable[[str], os.stat_result] = _lstat,
    ) -> None:
        self.settle_s = settle_ms / 1000
        # On a local disk mtime is our clock, so an old mtime already proves quiet; on
        # NFS/SMB it is the server's clock, so only our own repeated observations count.
        self.trust_mtime = trust_mtime
        self.clock, self.wall_ns, self.stat = clock, wall_ns, stat
        self._watch: OrderedDict[str, tuple[int, int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._watch)

    def offer(self, path: str, st: os.stat_result, writing: Collection[str] = ()) -> bool:
        """True when the file is ready now; otherwise it is watched until it settles."""
        if (
            self.trust_mtime
            and path not in writing
            and self.wall_ns() - st.st_mtime_ns >= self.settle_s * 1e9
        ):
            self._watch.pop(path, None)
            return True
        if path not in self._watch:
            self._watch[path] = (st.st_size, st.st_mtime_ns, self.clock())
        return False

    def forget(self, path: str) -> None:
        self._watch.pop(path, None)

    def due(self, writing: Collection[str] = ()) -> list[tuple[str, os.stat_result]]:
        """Files whose size/mtime held still for settle_ms; vanished ones are dropped."""
        now = self.clock()
        out = []
        for path, (size, mtime, since) in list(self._watch.items()):
            if now - since < self.settle_s or path in writing:
                continue
            try:
                st = self.stat(path)
            except OSError:
                del self._watch[path]  # gone before it settled: nothing to ingest
                continue
            if (st.st_size, st.st_mtime_ns) == (size, mtime):
                del self._watch[path]
                out.append((path, st))
            else:
                self._watch[path] = (st.st_size, st.st_mtime_ns, now)
        return out
