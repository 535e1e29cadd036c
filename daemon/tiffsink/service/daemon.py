"""`tiffsink run`: the service loop that feeds the pipeline from the watched folder.

One thread (this one) owns every decision and the dataset; the observer thread and the
scanner threads only enqueue. Order of start-up: sweep leftovers, recover the dataset,
start watching, start the first scan, then READY=1, so no file can fall between the scan
and the watch. On SIGTERM/SIGINT the loop stops taking batches, commits what is in
flight and exits 0; on SIGHUP it does the same and exits 75, so systemd starts it again
(reading the config anew); a second signal exits at once and recovery handles the rest.
Nothing ends it silently: a fault a restart may cure logs its event and exits 75, a bug
logs `daemon.crashed` with its traceback (exit 1), and dead threads are revived
(keepalive.py). docs/operations.md has the table of exit statuses.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import time
import traceback
from collections.abc import Callable

import structlog

from ..batch import Batcher
from ..config import Config
from ..dataset import DatasetWriter
from ..dataset.meta import set_label
from ..errors import DatasetIOError, DatasetLostError, RestartableError
from ..feed.events import EventQueue
from ..feed.names import NameFilter
from ..feed.report import CommitInfo
from ..feed.scan import Scanner
from ..feed.watch import Watcher
from ..pipeline import Pipeline
from ..pipeline.arena import sweep_stale_arenas
from ..signals import WITH_HANGUP, StopSignals
from .disposal import Disposal
from .fds import raise_soft_limit
from .health import Health
from .http import StatusServer
from .intake import Intake
from .keepalive import KeepAlive
from .preflight import check_folders
from .publishing import PublishThread
from .sdnotify import Notifier, watchdog_interval_s
from .threadwatch import ThreadDeaths

log = structlog.get_logger("tiffsink")

LOOP_WAIT_S = 0.05  # longest wait between looks at signals, timers and the batcher
STATUS_EVERY_S = 5.0
EX_TEMPFAIL = 75  # a restart may cure it: systemd's Restart=on-failure restarts


class Daemon:
    """The main thread of `tiffsink run`: owns the writer, the pipeline and every decision.

    Other threads: the watchdog observer, scanners and the HTTP server only enqueue or
    read; the pipeline's committer thread commits batches.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.q = EventQueue()
        self.root = cfg.watch.directory
        self.batcher = Batcher(cfg.batch.max_files, cfg.batch.max_wait_ms)
        self.notifier = Notifier()
        self.health = Health(
            cfg.image.row_bytes,
            stall_s=max(120.0, 4 * cfg.workers.timeout_s),
            dataset=cfg.dataset.directory,
        )
        self.stop = StopSignals(
            1,
            "tiffsink: second signal, exiting at once; recovery runs at next start",
            signals=WITH_HANGUP,
        )
        self.started = False  # READY sent: from here on an unexpected error is a crash

    # -- after a commit -------------------------------------------------------------
    def on_commit(self, info: CommitInfo) -> None:
        self.disposal.check()  # no source is moved or deleted for a lost index
        now = time.monotonic()
        for cand, version, pages in info.ingested:
            self.log.debug(  # per file: at info a fast ingest would flood the journal
                "file.ingested",
                path=cand.path,
                pages=pages,
                latency_ms=round((now - cand.seen_at) * 1000, 1),
            )
            self.health.ingested(now - cand.seen_at)
            self.disposal.ingested(cand.path, version)
        for cand, rec in info.failed:
            self.health.failed_file(rec.reason)
            self.disposal.failed(cand.path, (rec.size, rec.mtime_ns))
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
        self.health.committed(info, self.writer.committed)

    # -- lifecycle --------------------------------------------------------------------
    def run(self) -> int:
        """Serve until stopped; every way out but a start-up refusal logs why."""
        try:
            return self._run()
        except DatasetLostError as e:
            log.error(
                "dataset.lost",
                detail=str(e),
                action="exit 75; every source kept; see docs/operations.md (lost index)",
            )
            raise
        except DatasetIOError as e:
            log.error("dataset.io_error", detail=str(e), action="exit 75; restart recovers")
            raise
        except RestartableError as e:
            log.error("daemon.exiting", detail=str(e), action="exit 75; systemd restarts")
            raise
        except Exception as e:  # a bug: never a silent end
            if not self.started:
                raise  # a start-up error: the CLI says it in one line
            log.error(
                "daemon.crashed",
                error=f"{type(e).__name__}: {e}",
                traceback=traceback.format_exc(),
                action="exit 1; systemd restarts",
            )
            raise

    def _run(self) -> int:
        cfg = self.cfg
        check_folders(cfg)
        raise_soft_limit()  # toward the unit's LimitNOFILE where started without it
        for p in sweep_stale_arenas():
            log.info("shm.swept", path=str(p))
        self.log = log.bind()  # bound once: a filtered per-file debug call costs nothing
        self.writer = writer = DatasetWriter(cfg.dataset.directory, cfg.image, cfg.dataset.storage)
        set_label(writer.conn, cfg.metadata.label)
        log.info("dataset.opened", path=str(cfg.dataset.directory), rows=writer.committed)
        # `systemctl kill -s USR1 tiffsink` prints every thread's stack to the journal,
        # even if the interpreter is wedged: for diagnosing a stuck service in place.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        self.disposal = Disposal(cfg, writer)
        scanner = Scanner(
            self.q,
            writer.layout,
            NameFilter.from_config(cfg.watch),
            cfg.watch.recursive,
            cfg.excluded_folders(),
            report_known=cfg.sources.after_ingest != "keep"
            or cfg.sources.failed_directory is not None,
        )
        intake = Intake(cfg, self.q, self.batcher, scanner, self.disposal)
        keep: KeepAlive | None = None
        publisher: PublishThread | None = None
        with self.stop, ThreadDeaths() as deaths:
            self.pipeline = Pipeline(
                cfg, writer, self.on_commit, requeue=self.batcher.add, idle_wait=self.q.wait
            )
            watcher = Watcher(cfg.watch, self.q)
            try:
                watcher.start()
                scanner.start(self.root, "start")
                self.health.start(watcher, self.pipeline, writer.committed)
                if cfg.publish.target:
                    publisher = PublishThread(cfg.publish, writer.directory).start()
                    self.health.attach_publisher(publisher)
                keep = KeepAlive(self.health, watcher, scanner, deaths, self._server_factory())
                intake.on_scan_done = keep.scan_done
                self.notifier.notify("READY=1")
                self.started = True
                log.info(
                    "daemon.ready",
                    watch=str(self.root),
                    polling=cfg.watch.polling,
                    workers=cfg.workers.resolved_count(),
                    pid=os.getpid(),
                )
                self.loop(scanner, intake, keep)
                self.notifier.notify("STOPPING=1")
            finally:
                watcher.close()
                if publisher is not None:
                    publisher.close()
                if keep is not None:
                    keep.close()
                try:
                    self.pipeline.close()
                finally:
                    writer.close()
        code = EX_TEMPFAIL if self.stop.name == "SIGHUP" else 0
        log.info("daemon.stopped", rows=writer.committed, exit_status=code)
        return code

    def _server_factory(self) -> Callable[[], StatusServer] | None:
        """How to (re)start the HTTP server, if one is configured."""
        listen = self.cfg.metrics.listen
        if not listen:
            return None
        return lambda: StatusServer(self.health, listen, self.writer.directory)

    def loop(self, scanner: Scanner, intake: Intake, keep: KeepAlive) -> None:
        """Until a stop signal and an idle pipeline: take events, cut batches, step."""
        rescan_s = self.cfg.watch.rescan_interval_s
        next_rescan = time.monotonic() + rescan_s if rescan_s else float("inf")
        wd_every = watchdog_interval_s()
        next_wd = next_status = 0.0
        stopping_logged = False
        pipeline = self.pipeline
        while True:
            if self.stop.requested:
                if not stopping_logged:
                    stopping_logged = True
                    log.info(
                        "daemon.stopping",
                        signal=self.stop.name,
                        pending_batches=not pipeline.idle(),
                        then="exit 75: systemd restarts it, reading the config anew"
                        if self.stop.name == "SIGHUP"
                        else "exit 0",
                    )
                if pipeline.idle():
                    return
            else:
                intake.drain()
                now = time.monotonic()
                keep.tend(now, pipeline.pool.starts.problem())
                if now >= next_rescan:
                    next_rescan = now + rescan_s
                    scanner.request_full()
                scanner.start_pending(self.root)
                if pipeline.can_accept() and self.batcher.ready():
                    pipeline.submit(self.batcher.take())
            dl = self.batcher.deadline()
            if dl is None or self.stop.requested or not pipeline.can_accept():
                wait = LOOP_WAIT_S  # nothing due, or the pipeline is full: wait for workers
            else:
                wait = min(LOOP_WAIT_S, max(0.0, dl - time.monotonic()))
            pipeline.step(wait)
            now = time.monotonic()
            if wd_every is not None and now >= next_wd and self.health.progressing():
                self.notifier.notify("WATCHDOG=1")
                next_wd = now + wd_every
            if now >= next_status:
                next_status = now + STATUS_EVERY_S
                self.health.set_pending(len(self.batcher) + pipeline.pending_files())
                self.notifier.notify(f"STATUS={self.health.status_line()}")


def run(cfg: Config) -> int:
    return Daemon(cfg).run()
