"""The `tiffsink` command: parse arguments, load the config once, call one module.

Errors tiffsink expects (TiffsinkError) end the command with their message and exit
code 2; nothing here prints a traceback for a bad config or a locked dataset.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import replace
from pathlib import Path

from .config import Config, load_config
from .errors import DatasetIOError, TiffsinkError

EX_TEMPFAIL = 75


def _config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    if getattr(args, "dataset", None):
        cfg = replace(cfg, dataset=replace(cfg.dataset, directory=Path(args.dataset).resolve()))
    if getattr(args, "workers", None) is not None:
        cfg = replace(cfg, workers=replace(cfg.workers, count=args.workers))
    return cfg


def _default_config() -> str | None:
    return "config.toml" if Path("config.toml").exists() else None


def cmd_run(args: argparse.Namespace) -> int:
    from . import logs
    from .daemon import run

    cfg = _config(args)
    logs.setup(cfg.log)
    return run(cfg)


def cmd_ingest(args: argparse.Namespace) -> int:
    from . import logs
    from .ingest import ingest

    cfg = _config(args)
    logs.setup(cfg.log, sys.stderr)
    summary = ingest(cfg, [Path(s) for s in args.sources], progress=None)
    print("\n".join(summary.lines()))
    if summary.interrupted:
        return 130
    return 0 if summary.complete else 1


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import repair, verify

    rep = repair(args.dataset) if args.repair else verify(args.dataset)
    for p in rep.problems:
        print(f"PROBLEM: {p}")
    for n in rep.notes:
        print(f"ok: {n}")
    print("consistent" if rep.ok else f"{len(rep.problems)} problem(s)")
    return 0 if rep.ok else 1


def cmd_status(args: argparse.Namespace) -> int:
    from .status import collect, render

    st = collect(Path(args.dataset))
    print(json.dumps(st, indent=2) if args.json else render(st))
    return 0


def cmd_failures(args: argparse.Namespace) -> int:
    from .reader import open_dataset

    with open_dataset(args.dataset) as ds:
        fails = ds.failures(args.reason)
    if args.json:
        print(json.dumps([f.__dict__ for f in fails], indent=2))
    else:
        for f in fails:
            print(f"{f.reason}\t{f.source}\t{f.detail}")
        print(f"{len(fails)} failure(s)")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from . import index
    from .errors import DatasetError
    from .store import INDEX

    idx = Path(args.dataset) / INDEX
    if not idx.is_file():
        raise DatasetError(args.dataset, f"not a tiffsink dataset (no {INDEX})")
    conn = index.connect(idx)
    try:
        n = index.forget_failures(conn, args.reason)
    finally:
        conn.close()
    print(
        f"{n} failure record(s) cleared; the daemon's next scan (or `tiffsink ingest`) "
        "tries those files again"
    )
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from .preview import contact_sheet

    out = contact_sheet(Path(args.dataset), args.last, Path(args.out))
    print(f"wrote {out}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate import main as simulate_main

    return simulate_main(args)


def cmd_install_service(args: argparse.Namespace) -> int:
    from .unit import install_service

    cfg_path = Path(args.config).resolve()
    cfg = load_config(cfg_path)
    text = install_service(cfg, cfg_path, print_only=args.print, name=args.name)
    if args.print:
        print(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tiffsink",
        description="Every TIFF that lands in a folder, exactly once, in one growing "
        "memory-mappable dataset (images.npy + index.sqlite).",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--config",
            default=_default_config(),
            help="config file (default: ./config.toml if present, else defaults)",
        )

    r = sub.add_parser("run", help="the daemon: watch [watch] directory, ingest every TIFF")
    with_config(r)
    r.set_defaults(func=cmd_run)

    i = sub.add_parser("ingest", help="backfill folders that already exist")
    i.add_argument("sources", nargs="+", metavar="SRC")
    i.add_argument("--dataset", help="dataset folder (default: [dataset] directory)")
    i.add_argument("--workers", type=int, help="worker processes (default: [workers] count)")
    with_config(i)
    i.set_defaults(func=cmd_ingest)

    v = sub.add_parser("verify", help="check a dataset's consistency")
    v.add_argument("dataset")
    v.add_argument("--repair", action="store_true", help="run crash recovery, then check")
    v.set_defaults(func=cmd_verify)

    s = sub.add_parser("status", help="rows, rate, failures and the daemon holding a dataset")
    s.add_argument("dataset")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    f = sub.add_parser("failures", help="list recorded failures")
    f.add_argument("dataset")
    f.add_argument("--reason")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_failures)

    rt = sub.add_parser("retry", help="make recorded failures eligible again")
    rt.add_argument("dataset")
    rt.add_argument("--reason", help="only failures with this reason")
    rt.set_defaults(func=cmd_retry)

    pv = sub.add_parser("preview", help="contact sheet of recent rows")
    pv.add_argument("dataset")
    pv.add_argument("--last", type=int, default=16)
    pv.add_argument("--out", default="sheet.png")
    pv.set_defaults(func=cmd_preview)

    sm = sub.add_parser("simulate", help="write frames into a folder as an instrument does")
    sm.add_argument("directory")
    sm.add_argument("--count", type=int, default=100)
    sm.add_argument("--rate", type=float, default=5.0, help="frames per second")
    sm.add_argument("--shape", default="2048x2048", help="HEIGHTxWIDTH")
    sm.add_argument("--dtype", default="uint16", choices=["uint8", "uint16", "float32"])
    sm.add_argument("--style", default="mixed", choices=["chunked", "rename", "mixed"])
    sm.add_argument("--seed", type=int, default=0)
    sm.set_defaults(func=cmd_simulate)

    ins = sub.add_parser("install-service", help="install or print the systemd unit")
    ins.add_argument("--config", required=True, help="the config the service will run with")
    ins.add_argument("--name", help="instance name (one unit per instrument)")
    ins.add_argument("--print", action="store_true", help="print the unit instead of installing")
    ins.set_defaults(func=cmd_install_service)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("run", "ingest"):
        # `tiffsink status | head` should end quietly, like any Unix tool.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        return int(args.func(args))
    except DatasetIOError as e:
        # Not a config problem: a restart (systemd's Restart=on-failure) recovers.
        print(f"tiffsink: I/O error: {e}", file=sys.stderr)
        return EX_TEMPFAIL
    except TiffsinkError as e:
        print(f"tiffsink: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tiffsink: interrupted", file=sys.stderr)
        return 130
