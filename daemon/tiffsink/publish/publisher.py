"""Publish one dataset's committed rows to one target, continuously and exactly once.

The remote protocol keeps the local one's promise: a reader never sees a row that is not
fully there. Each round (`plan.py`) writes its shard objects first (full shards once,
the last partly filled one replaced whole by one PUT), then the index objects of those
shards, then raises the array's shape in zarr.json: the remote commit point. A publisher
killed anywhere leaves at most objects past the shape, which the next one overwrites
with the same rows; it resumes from the shape it finds, after checking that the rows
there are this dataset's (`verify_boundary`).

Only committed rows are read (a read-only view, as any reader), so publishing never
holds up ingestion. A round plans at most `MAX_SHARDS` shards, and each of the
`PUT_THREADS` senders reads its shard only when it starts on it (then PUTs the shard and
its index object), so at most `PUT_THREADS` shards are in memory whatever the backlog,
and the PUTs of one shard overlap the reading and encoding of the next.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..dataset import index, lock, open_dataset
from ..dataset.records import RowRecord
from ..dataset.remote import keys
from ..dataset.remote.image import RemoteImage
from ..dataset.remote.target import Target, open_target
from ..errors import DatasetLockedError, PublishError, PublishHeldError
from .lease import Lease
from .plan import ShardSend, plan, reached

MAX_SHARDS = 16  # per round: the shape is raised once per round (a barrier)
PUT_THREADS = 4  # shards in flight at once: bounds memory (a shard and its encoding each)


@dataclass
class PublishState:
    """What the publisher has done; read by health, metrics, status and the page."""

    url: str
    remote_rows: int = 0
    local_rows: int = 0
    bytes_sent: int = 0
    objects_sent: int = 0
    errors: int = 0
    last_error: str = ""
    lag_s: float = 0.0  # age of the oldest committed row not yet published
    updated_at: float = 0.0

    @property
    def lag_rows(self) -> int:
        return max(0, self.local_rows - self.remote_rows)


class Publisher:
    """The only writer of one target, for one local dataset (`start`, `step`, `close`)."""

    def __init__(
        self,
        dataset: Path,
        url: str,
        tail_interval_s: float = 5.0,
        lease_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ds = open_dataset(dataset)
        self.clock = clock
        self.tail_interval_s = tail_interval_s
        self.tail_sent_at = float("-inf")
        self.lock_fd = -1
        try:
            self.lock_fd = lock.acquire(self.ds.layout, self.ds.layout.publish_lock)
        except DatasetLockedError as e:
            self.ds.close()
            raise PublishHeldError(
                dataset, f"another publisher (PID {e.pid}) is publishing this dataset"
            ) from None
        try:
            self.target: Target = open_target(url)
            self.image = RemoteImage(self.ds.spec, RemoteImage.storage_for(self.ds.storage))
            self.lease = Lease(self.target, str(self.ds.directory), lease_s, clock)
        except BaseException:
            self.close()
            raise
        self.state = PublishState(url)
        self.counting = threading.Lock()  # senders add to the state's counts
        self.renewing = threading.Lock()  # and renew the lease, one at a time
        self.pool = ThreadPoolExecutor(PUT_THREADS, thread_name_prefix="tiffsink-publish")
        self.S = self.image.rows_per_shard
        self.array_doc: dict[str, Any] = {}

    # --- start: lease, the image's documents, the boundary ---

    def start(self) -> None:
        """Hold the target and find where the remote copy ends (creating it if new)."""
        self.lease.acquire()
        group, self.array_doc = self.image.documents()
        mine = self._dataset_doc()
        there = self.target.get(keys.DATASET_JSON)
        if there is None:
            self.target.put(keys.GROUP_JSON, group)
            if self.target.get(keys.ARRAY_JSON) is None:
                self.target.put(keys.ARRAY_JSON, self.image.array_json(self.array_doc, 0))
            self.target.put(keys.DATASET_JSON, mine)
        elif _identity(json.loads(there)) != _identity(json.loads(mine)):
            raise PublishError(
                self.target.url,
                "holds another dataset, not this dataset's rows (its id, image spec or "
                "storage differ): publish to another prefix",
            )
        array = self.target.get(keys.ARRAY_JSON)
        n = self.image.rows_in(array) if array is not None else 0
        self.verify_boundary(n)
        self.state.remote_rows = n

    def _dataset_doc(self) -> bytes:
        keep = ("image", "storage", "label", "dataset_id")
        info = {k: v for k, v in self.ds.info.items() if k in keep}
        info["storage"] = {**info.get("storage", {}), **_storage_dict(self.image)}
        info["remote_version"] = keys.REMOTE_VERSION
        return json.dumps(info, indent=2, sort_keys=True).encode()

    def verify_boundary(self, n: int) -> None:
        """The remote's last shard holds this dataset's rows: its index records equal ours
        (source, page, version, hashes). PublishError if not, or if it holds more rows."""
        self.ds.refresh()
        if n > len(self.ds):
            raise PublishError(
                self.target.url,
                f"holds {n} rows, more than the {len(self.ds)} this dataset has committed",
            )
        if n == 0:
            return
        s = (n - 1) // self.S
        data = self.target.get(keys.index_key(s))
        if data is None:
            raise PublishError(self.target.url, f"lacks the index object of its shard {s}")
        there = [r for r in keys.decode_records(data) if r.row < n]
        here = index.row_records(self.ds.conn, s * self.S, n)
        if [_same(r) for r in there] != [_same(r) for r in here]:
            raise PublishError(
                self.target.url,
                f"its rows {s * self.S}..{n - 1} are not this dataset's (another dataset, "
                "or one recreated since it was published)",
            )

    # --- rounds ---

    def step(self, force_tail: bool = False) -> int:
        """One round: rows published (0 when caught up, or only a tail not yet due)."""
        self.ds.refresh()
        local = len(self.ds)
        self.state.local_rows = local
        now = self.clock()
        due = force_tail or now - self.tail_sent_at >= self.tail_interval_s
        sends = plan(self.state.remote_rows, local, self.S, MAX_SHARDS, due)
        if not sends:
            self._lag(local)
            return 0
        self.lease.renew_if_due()
        # The index records are read here (the index connection is this thread's); each
        # sender reads its shard's rows, encodes and PUTs them, then the shard's index
        # object: obstore, file reads and the codecs release the GIL.
        records = [
            index.row_records(self.ds.conn, s.shard * self.S, s.shard * self.S + s.rows)
            for s in sends
        ]
        list(self.pool.map(self._send, sends, records))
        n = reached(sends, self.S)
        self._put(keys.ARRAY_JSON, self.image.array_json(self.array_doc, n))
        if not sends[-1].full:
            self.tail_sent_at = now
        done = n - self.state.remote_rows
        self.state.remote_rows = n
        self._lag(local)
        return done

    def _send(self, send: ShardSend, records: list[RowRecord]) -> None:
        """One shard object, then its index object."""
        with self.renewing:  # a round on a slow link may outlast a third of the lease
            self.lease.renew_if_due()
        first = send.shard * self.S
        # A full shard the local format already holds is copied as it is; any other is
        # made from the committed rows.
        whole = self.ds.full_shard(send.shard, self.S) if send.full else None
        if whole is None:
            whole = self.image.shard(self.ds.read(first, first + send.rows))
        self._put(keys.shard_key(send.shard, self.image.ndim), whole)
        del whole  # memory: this sender holds one shard at a time
        self._put(keys.index_key(send.shard), keys.encode_records(records))

    def _put(self, key: str, data: bytes) -> None:
        self.target.put(key, data)
        with self.counting:
            self.state.bytes_sent += len(data)
            self.state.objects_sent += 1

    def _lag(self, local: int) -> None:
        st = self.state
        st.updated_at = self.clock()
        if st.remote_rows >= local:
            st.lag_s = 0.0
            return
        rec = index.row_record(self.ds.conn, st.remote_rows)
        st.lag_s = max(0.0, st.updated_at - rec.ingested_at) if rec is not None else 0.0

    def close(self) -> None:
        """Release the lease (the next publisher may start at once) and the local lock."""
        lease = getattr(self, "lease", None)
        try:
            if lease is not None:
                lease.release()
        finally:
            pool = getattr(self, "pool", None)
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            if self.lock_fd >= 0:
                os.close(self.lock_fd)
                self.lock_fd = -1
            self.ds.close()


def _identity(doc: dict[str, Any]) -> tuple[Any, Any, Any]:
    return doc.get("image"), doc.get("storage"), doc.get("dataset_id")


def _storage_dict(image: RemoteImage) -> dict[str, Any]:
    st = image.storage
    return {
        "format": st.format,
        "shard_rows": st.shard_rows,
        "compression": st.compression,
        "compression_level": st.compression_level,
    }


def _same(r: RowRecord) -> tuple[object, ...]:
    return (r.row, r.source, r.page, r.size, r.mtime_ns, r.content_hash, r.page_hash)
