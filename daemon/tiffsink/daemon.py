"""`tiffsink run`: the service loop that feeds the pipeline from the watched folder.

One thread (this one) owns every decision and the dataset; the observer thread and the
scanner threads only enqueue. Order of start-up: sweep leftovers, recover the dataset,
start watching, start the first scan, then READY=1, so no file can fall between the scan
and the watch. On SIGTERM/SIGINT the loop stops taking batches, commits what is in
flight and exits 0; a second signal exits at once and recovery handles the rest.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import queue
import shutil
import signal
import threading
import time
from pathlib import Path
from types import FrameType

import structlog

from . import failpoints, index
from .batch import Batcher
from .config import Config
from .errors import DatasetIOError
from .health import Health
from .pipeline import Candidate, CommitInfo, Pipeline
from .pool import sweep_stale_arenas
from .scan import walk
from .sdnotify import Notifier, watchdog_interval_s
from .store import INDEX, DatasetWriter
from .watch import Seen, Settler, Watcher, inside, wanted_filter

log = structlog.get_logger("tiffsink")


class Daemon:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        # queue.Queue, not SimpleQueue: the main thread blocks in get(timeout) while
        # SIGTERM arrives, and SimpleQueue.get(timeout) was seen to block forever when a
        # signal interrupted it (a stress test caught the daemon ignoring SIGTERM there).
        self.q: queue.Queue[Seen] = queue.Queue()
        self.wanted = wanted_filter(cfg.watch)
        self.root = cfg.watch.directory
        src = cfg.sources
        self.never_watch = [
            p
            for p in (src.done_directory, src.failed_directory, cfg.dataset.directory)
            if p is not None
        ]
        self.batcher = Batcher(cfg.batch.max_files, cfg.batch.max_wait_ms)
        self.settler = Settler(cfg.watch.settle_ms, trust_mtime=not cfg.watch.polling)
        self.notifier = Notifier()
        self.health = Health()
        self.stop_signals = 0
        self.stop_signal_name = ""
        # Files inotify saw written and not yet closed: they wait for their close event.
        self.writing: set[str] = set()
        self._early: list[Seen] = []  # taken off the queue while waiting idle
        self._scans: list[threading.Thread] = []
        self._full_scan_pending = False

    # -- feeders --------------------------------------------------------------------
    def scan(self, folder: Path, why: str) -> None:
        """List `folder` in a thread; queue what is neither a row nor a recorded failure."""
        t = threading.Thread(
            target=self._scan, args=(folder, why), daemon=True, name=f"tiffsink-scan-{why}"
        )
        self._scans.append(t)
        t.start()

    def _scan(self, folder: Path, why: str) -> None:
        t0 = time.monotonic()
        n = queued = 0
        conn = index.connect(self.cfg.dataset.directory / INDEX, readonly=True)
        act = self.cfg.sources.after_ingest != "keep"
        try:
            for path, st in walk(folder, self.wanted, self.cfg.watch.recursive, self.never_watch):
                n += 1
                version = (path, st.st_size, st.st_mtime_ns)
                if index.known_versions(conn, [version]):
                    if act or self.cfg.sources.failed_directory:
                        self.q.put(Seen("known", path))  # finish a move/delete a crash cut short
                    continue
                queued += 1
                self.q.put(Seen("scan", path))
        finally:
            conn.close()
        self.q.put(Seen("scan_done", f"{why}:{n}:{queued}:{time.monotonic() - t0:.3f}"))

    def consider(self, path: str, kind: str) -> None:
        """Decide what one sighting means; called only from the main loop."""
        if inside(path, self.never_watch) or not self.wanted(path):
            return
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            self.settler.forget(path)
            return  # gone already: nothing to ingest, and a disappearance is never acted on
        if os.path.isdir(path) and not os.path.islink(path):
            return
        if kind in ("scan", "settle") and not self.settler.offer(path, st, self.writing):
            return
        self.settler.forget(path)
        self.batcher.add(Candidate(path, str(self.root), st.st_size, st.st_mtime_ns))

    def idle_wait(self, timeout_s: float) -> None:
        """Sleep until the observer or a scanner reports something, or `timeout_s`."""
        with contextlib.suppress(queue.Empty):
            self._early.append(self.q.get(timeout=timeout_s))

    def drain(self, limit: int = 5000) -> bool:
        moved = False
        for _ in range(limit):
            if self._early:
                seen = self._early.pop()
            else:
                try:
                    seen = self.q.get_nowait()
                except queue.Empty:
                    break
            moved = True
            if seen.kind == "writing":
                self.writing.add(seen.path)
            elif seen.kind == "gone":
                self.writing.discard(seen.path)
            elif seen.kind in ("ready", "settle", "scan"):
                if seen.kind == "ready":
                    self.writing.discard(seen.path)
                self.consider(seen.path, seen.kind)
            elif seen.kind == "folder":
                if not inside(seen.path, self.never_watch):
                    self.scan(Path(seen.path), "new-folder")
            elif seen.kind == "lost":
                log.warning("events.lost", reason=seen.path, action="rescan")
                self.request_full_scan()
            elif seen.kind == "known":
                self.finish_known(seen.path)
            elif seen.kind == "scan_done":
                why, n, queued, secs = seen.path.split(":")
                log.info("scan.done", why=why, files=int(n), queued=int(queued), s=float(secs))
                self.health.scanned()
        return moved

    def request_full_scan(self) -> None:
        self._full_scan_pending = True

    # -- after a commit -------------------------------------------------------------
    def on_commit(self, info: CommitInfo) -> None:
        now = time.monotonic()
        for cand, version, pages in info.ingested:
            log.info(
                "file.ingested",
                path=cand.path,
                pages=pages,
                latency_ms=round((now - cand.seen_at) * 1000, 1),
            )
            self.health.ingested(now - cand.seen_at)
            self.after_ingest(cand.path, version)
        for cand, rec in info.failed:
            self.health.failed_file(rec.reason)
            self.after_failure(cand.path, (rec.size, rec.mtime_ns))
        log.info(
            "batch.committed",
            rows=info.rows,
            files=len(info.ingested),
            failed=len(info.failed),
            skipped=info.skipped,
            ms=round(info.commit_ms, 1),
            batch_ms=round(info.batch_ms, 1),
            first_row=info.first_row,
        )
        self.health.committed(info, self.pipeline.writer)

    def _same_version(self, path: str, version: tuple[int, int]) -> bool:
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            return False
        return (st.st_size, st.st_mtime_ns) == version

    def _move(self, path: str, dest_root: Path) -> None:
        rel = os.path.relpath(path, self.root)
        dest = dest_root / (rel if not rel.startswith("..") else os.path.basename(path))
        dest.parent.mkdir(parents=True, exist_ok=True)
        n = 1
        while dest.exists():
            dest = dest.with_name(f"{dest.stem}.{n}{dest.suffix}")
            n += 1
        shutil.move(path, dest)

    def after_ingest(self, path: str, version: tuple[int, int]) -> None:
        """keep/move/delete, only for the version that was committed (never a newer one)."""
        mode = self.cfg.sources.after_ingest
        if mode == "keep" or not self._same_version(path, version):
            return
        try:
            if mode == "delete":
                os.unlink(path)
            elif self.cfg.sources.done_directory is not None:
                self._move(path, self.cfg.sources.done_directory)
        except OSError as e:
            log.error("source.action_failed", path=path, action=mode, detail=str(e))
        failpoints.hit("after_source_action")

    def after_failure(self, path: str, version: tuple[int, int]) -> None:
        dest = self.cfg.sources.failed_directory
        if dest is None or not self._same_version(path, version):
            return
        try:
            self._move(path, dest)
        except OSError as e:
            log.error("source.action_failed", path=path, action="move-failed", detail=str(e))

    def finish_known(self, path: str) -> None:
        """A scan found a committed (or failed) version still in the inbox: act on it now."""
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            return
        v = (st.st_size, st.st_mtime_ns)
        if self.pipeline.writer.ingested(path, *v):
            self.after_ingest(path, v)
        else:
            self.after_failure(path, v)

    # -- lifecycle --------------------------------------------------------------------
    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Only set a flag: logging here could deadlock on the logger's lock if the
        signal interrupted a log write; the loop logs `daemon.stopping` instead."""
        self.stop_signals += 1
        self.stop_signal_name = signal.Signals(signum).name
        if self.stop_signals > 1:
            os.write(2, b"tiffsink: second signal, exiting at once; recovery runs at next start\n")
            os._exit(1)

    def run(self) -> int:
        cfg = self.cfg
        for p in sweep_stale_arenas():
            log.info("shm.swept", path=str(p))
        self.root.mkdir(parents=True, exist_ok=True)
        writer = DatasetWriter(cfg.dataset.directory, cfg.image)
        log.info("dataset.opened", path=str(cfg.dataset.directory), rows=writer.committed)
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, self.on_signal)
        # `systemctl kill -s USR1 tiffsink` prints every thread's stack to the journal,
        # even if the interpreter is wedged: for diagnosing a stuck service in place.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        self.pipeline = Pipeline(cfg, writer, self.on_commit, requeue=self.batcher.add)
        self.pipeline.idle_wait = self.idle_wait
        watcher = Watcher(cfg.watch, self.q)
        try:
            watcher.start()
            self.scan(self.root, "start")
            self.health.start(watcher, self.pipeline, cfg)
            self.notifier.notify("READY=1")
            log.info(
                "daemon.ready",
                watch=str(self.root),
                polling=cfg.watch.polling,
                workers=cfg.workers.resolved_count(),
                pid=os.getpid(),
            )
            try:
                self.loop(watcher)
            except DatasetIOError as e:
                log.error("dataset.io_error", detail=str(e), action="exit 75; restart recovers")
                raise
            self.notifier.notify("STOPPING=1")
        finally:
            watcher.close()
            self.health.close()
            self.pipeline.close()
            writer.close()
        log.info("daemon.stopped", rows=writer.committed)
        return 0

    def loop(self, watcher: Watcher) -> None:
        cfg = self.cfg
        rescan_s = cfg.watch.rescan_interval_s
        next_rescan = time.monotonic() + rescan_s if rescan_s else float("inf")
        wd_every = watchdog_interval_s()
        next_wd = next_status = 0.0
        stopping_logged = False
        while True:
            if self.stop_signals:
                if not stopping_logged:
                    stopping_logged = True
                    log.info(
                        "daemon.stopping",
                        signal=self.stop_signal_name,
                        pending_batches=not self.pipeline.idle(),
                    )
                if self.pipeline.idle():
                    return
            else:
                self.drain()
                for path, _st in self.settler.due(self.writing):
                    self.consider(path, "ready")
                now = time.monotonic()
                if not watcher.alive():
                    log.error("events.lost", reason="observer thread died", action="restart+rescan")
                    watcher.restart()
                    self.request_full_scan()
                if now >= next_rescan:
                    next_rescan = now + rescan_s
                    self.request_full_scan()
                self._scans = [t for t in self._scans if t.is_alive()]
                if self._full_scan_pending and not self._scans:
                    self._full_scan_pending = False
                    self.scan(self.root, "reconcile")
                if self.pipeline.can_accept() and self.batcher.ready():
                    self.pipeline.submit(self.batcher.take())
            dl = self.batcher.deadline()
            if dl is None or self.stop_signals or not self.pipeline.can_accept():
                wait = 0.05  # nothing due, or the pipeline is full: wait for workers/commit
            else:
                wait = min(0.05, max(0.0, dl - time.monotonic()))
            self.pipeline.step(wait)
            now = time.monotonic()
            if wd_every is not None and now >= next_wd and self.health.progressing():
                self.notifier.notify("WATCHDOG=1")
                next_wd = now + wd_every
            if now >= next_status:
                next_status = now + 5
                self.health.pending = len(self.batcher) + self.pipeline.pending_files()
                self.notifier.notify(f"STATUS={self.health.status_line()}")


def run(cfg: Config) -> int:
    return Daemon(cfg).run()
