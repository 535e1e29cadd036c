"""One function per `tiffsink` subcommand: load the config once, call one stage.

Each takes the parsed arguments and returns the exit code; errors are raised as
TiffsinkError and turned into messages and exit codes by `main`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..config import Config, load_config
from ..config.resources import fit_resources
from ..errors import FAILURE_REASONS, ConfigError
from .text import printable
from .where import parse_where


def _config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    if getattr(args, "dataset", None):
        cfg = replace(cfg, dataset=replace(cfg.dataset, directory=Path(args.dataset).resolve()))
    if getattr(args, "workers", None) is not None:
        cfg = replace(cfg, workers=replace(cfg.workers, count=args.workers))
        cfg = fit_resources(cfg)  # --workers is capped like the config's count
    return cfg


def cmd_export(args: argparse.Namespace) -> int:
    from ..config import Storage
    from ..dataset.export import export

    if args.shard_rows < 1:
        raise ConfigError(None, "--shard-rows", "must be at least 1")
    storage = Storage(args.format, args.shard_rows, args.compression, args.level)

    def show(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\r{done}/{total} rows", end="", file=sys.stderr, flush=True)

    res = export(args.dataset, args.out, storage, show)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(
        f"exported {res.rows} rows ({res.copied} copied now) and {res.failures} failure "
        f"records to {args.out} ({args.format}); every row verified against the source"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ..service import logs
    from ..service.daemon import run

    cfg = _config(args)
    logs.setup(cfg.log)
    logs.config_warnings(cfg)
    return run(cfg)


def cmd_ingest(args: argparse.Namespace) -> int:
    cfg = _config(args)
    scheduler = cfg.cluster.scheduler if args.scheduler is None else args.scheduler
    if not scheduler:  # the workers' fork server imports while this process does
        from ..pipeline.launcher import start_early

        start_early()
    from ..service import logs
    from ..service.ingest import ingest
    from ..signals import EX_INTERRUPTED

    logs.setup(cfg.log, sys.stderr)
    logs.config_warnings(cfg)
    sources = [Path(s) for s in args.sources]
    summary = ingest(cfg, sources, progress=None, scheduler=scheduler or None)
    print("\n".join(summary.lines()))
    if summary.interrupted:
        return EX_INTERRUPTED
    return 0 if summary.complete else 1


EX_IN_USE = 3  # verify --repair on a dataset a writer holds: no damage, try it stopped


def cmd_verify(args: argparse.Namespace) -> int:
    from ..dataset.verify import repair, verify
    from ..errors import DatasetLockedError

    if "://" in args.dataset or args.against:
        from ..dataset.remote.verify import verify_remote

        if args.repair:
            raise ConfigError(None, "--repair", "repairs a local dataset only")
        if args.against:
            rep = verify_remote(args.against, Path(args.dataset))
        else:
            rep = verify_remote(args.dataset)
    elif args.repair:
        try:
            rep = repair(args.dataset)
        except DatasetLockedError as e:
            holder = f"the daemon (PID {e.pid})" if e.pid else "another tiffsink process"
            print(
                f"tiffsink: {args.dataset}: {holder} holds this dataset, so it cannot be "
                "repaired now (stop it first); plain `tiffsink verify` works while it runs",
                file=sys.stderr,
            )
            return EX_IN_USE
    else:
        rep = verify(args.dataset)
    for p in rep.problems:
        print(f"PROBLEM: {p}")
    for n in rep.notes:
        print(f"ok: {n}")
    print("consistent" if rep.ok else f"{len(rep.problems)} problem(s)")
    return 0 if rep.ok else 1


def cmd_publish(args: argparse.Namespace) -> int:
    from ..publish import Follower, Publisher
    from ..signals import EX_INTERRUPTED, StopSignals

    dataset, url = Path(args.dataset), args.url
    stop = StopSignals(EX_INTERRUPTED, "tiffsink: second signal, stopping at once")

    def wait(seconds: float) -> bool:
        """Pace retries and polls; True once a stop was asked for."""
        deadline = time.monotonic() + seconds
        while not stop.requested and time.monotonic() < deadline:
            time.sleep(min(0.05, seconds))
        return stop.requested

    def make() -> Publisher:
        return Publisher(dataset, url, tail_interval_s=args.tail_interval_ms / 1000)

    with stop:
        st = Follower(make, dataset, args.follow, wait).run()
    print(
        f"published {st.remote_rows} of {st.local_rows} committed rows to {url} "
        f"({st.bytes_sent} bytes sent, {st.errors} errors retried)"
    )
    return EX_INTERRUPTED if stop.requested and not args.follow else 0


def cmd_status(args: argparse.Namespace) -> int:
    from ..dataset.status import collect
    from .status import render

    st = collect(Path(args.dataset))
    print(json.dumps(st, indent=2) if args.json else render(st))
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from ..dataset.opener import open_dataset

    equals = parse_where(args.where)
    with open_dataset(args.dataset) as ds:
        found = [(r, ds.record(int(r)), ds.meta(int(r))) for r in ds.rows(**equals)]
    if args.json:
        out = [
            {"row": int(r), "source": rec.source, "page": rec.page, "meta": m}
            for r, rec, m in found
        ]
        print(json.dumps(out, indent=2))
    else:
        for r, rec, m in found:
            print(f"{r}\t{printable(rec.source)}\t{rec.page}\t{json.dumps(m)}")
        print(f"{len(found)} row(s)")
    return 0


def cmd_failures(args: argparse.Namespace) -> int:
    from ..dataset.opener import open_dataset

    with open_dataset(args.dataset) as ds:
        fails = ds.failures(args.reason)
    if args.json:
        print(json.dumps([f.__dict__ for f in fails], indent=2))
    else:
        for f in fails:
            print(f"{f.reason}\t{printable(f.source)}\t{printable(f.detail)}")
        print(f"{len(fails)} failure(s)")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from ..dataset import index
    from ..dataset.layout import Layout

    if args.reason is not None and args.reason not in FAILURE_REASONS:
        known = ", ".join(sorted(FAILURE_REASONS))
        raise ConfigError(None, "--reason", f"unknown reason {args.reason!r}; known: {known}")
    conn = index.connect(Layout.of(args.dataset).require().index)
    try:
        n = index.forget_failures(conn, args.reason)
    finally:
        conn.close()
    which = f" with reason {args.reason}" if args.reason else ""
    print(
        f"{n} failure record(s){which} cleared; the daemon's next scan (or `tiffsink ingest`) "
        "tries those files again"
    )
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from ..cli.preview import contact_sheet

    out = contact_sheet(Path(args.dataset), args.last, Path(args.out))
    print(f"wrote {out}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from ..cli.simulate import main as simulate_main

    return simulate_main(args)


def cmd_install_service(args: argparse.Namespace) -> int:
    from ..service.unit import install_service

    cfg_path = Path(args.config).resolve()
    cfg = load_config(cfg_path)
    text = install_service(cfg, cfg_path, print_only=args.print, name=args.name)
    if args.print:
        print(text)
    return 0
