"""The argument parser of `tiffsink`: every subcommand, its options and its help."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config.schema import COMPRESSIONS, FORMATS, Storage
from . import commands


def _default_config() -> str | None:
    return "config.toml" if Path("config.toml").exists() else None


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
    r.set_defaults(func=commands.cmd_run)

    i = sub.add_parser("ingest", help="backfill folders that already exist")
    i.add_argument("sources", nargs="+", metavar="SRC")
    i.add_argument("--dataset", help="dataset folder (default: [dataset] directory)")
    i.add_argument("--workers", type=int, help="worker processes (default: [workers] count)")
    i.add_argument(
        "--scheduler",
        help='run on Dask: "local" (a LocalCluster) or "tcp://HOST:PORT" '
        "(default: [cluster] scheduler; empty = this machine's pool)",
    )
    with_config(i)
    i.set_defaults(func=commands.cmd_ingest)

    v = sub.add_parser("verify", help="check a dataset's consistency")
    v.add_argument("dataset")
    v.add_argument("--repair", action="store_true", help="run crash recovery, then check")
    v.set_defaults(func=commands.cmd_verify)

    ex = sub.add_parser("export", help="copy a dataset into npy or zarr, index included")
    ex.add_argument("dataset")
    ex.add_argument("out")
    ex.add_argument("--format", required=True, choices=FORMATS)
    ex.add_argument("--shard-rows", type=int, default=Storage.shard_rows)
    ex.add_argument("--compression", choices=COMPRESSIONS, default=Storage.compression)
    ex.add_argument("--level", type=int, default=Storage.compression_level, choices=range(1, 10))
    ex.set_defaults(func=commands.cmd_export)

    s = sub.add_parser("status", help="rows, rate, failures and the daemon holding a dataset")
    s.add_argument("dataset")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=commands.cmd_status)

    q = sub.add_parser("query", help="rows whose metadata matches, e.g. --where well=B03")
    q.add_argument("dataset")
    q.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep rows whose metadata KEY equals VALUE (repeatable; numbers match numbers)",
    )
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=commands.cmd_query)

    f = sub.add_parser("failures", help="list recorded failures")
    f.add_argument("dataset")
    f.add_argument("--reason")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=commands.cmd_failures)

    rt = sub.add_parser("retry", help="make recorded failures eligible again")
    rt.add_argument("dataset")
    rt.add_argument("--reason", help="only failures with this reason")
    rt.set_defaults(func=commands.cmd_retry)

    pv = sub.add_parser("preview", help="contact sheet of recent rows")
    pv.add_argument("dataset")
    pv.add_argument("--last", type=int, default=16)
    pv.add_argument("--out", default="sheet.png")
    pv.set_defaults(func=commands.cmd_preview)

    sm = sub.add_parser("simulate", help="write frames into a folder as an instrument does")
    sm.add_argument("directory")
    sm.add_argument("--count", type=int, default=100)
    sm.add_argument("--rate", type=float, default=5.0, help="frames per second")
    sm.add_argument("--shape", default="2048x2048", help="HEIGHTxWIDTH")
    sm.add_argument("--dtype", default="uint16", choices=["uint8", "uint16", "float32"])
    sm.add_argument("--style", default="mixed", choices=["chunked", "rename", "mixed"])
    sm.add_argument("--seed", type=int, default=0)
    sm.set_defaults(func=commands.cmd_simulate)

    ins = sub.add_parser("install-service", help="install or print the systemd unit")
    ins.add_argument("--config", required=True, help="the config the service will run with")
    ins.add_argument("--name", help="instance name (one unit per instrument)")
    ins.add_argument("--print", action="store_true", help="print the unit instead of installing")
    ins.set_defaults(func=commands.cmd_install_service)
    return p
