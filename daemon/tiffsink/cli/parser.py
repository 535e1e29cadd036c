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
        "memory-mappable dataset: images.npy or an OME-Zarr images.zarr, with "
        "index.sqlite saying which file, page and metadata each row came from.",
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
    i.add_argument("sources", nargs="+", metavar="SRC", help="folders to walk (recursively)")
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
    v.add_argument("dataset", help="dataset folder")
    v.add_argument(
        "--repair",
        action="store_true",
        help="run crash recovery, then check (needs the daemon stopped: exit 3 while it runs)",
    )
    v.add_argument(
        "--against",
        metavar="URL",
        help="check the copy published at URL against this dataset, row for row "
        "(`verify URL` alone checks a published copy against its own index)",
    )
    v.set_defaults(func=commands.cmd_verify)

    pb = sub.add_parser("publish", help="publish committed rows to object storage as OME-Zarr")
    pb.add_argument("dataset", help="dataset folder")
    pb.add_argument(
        "url",
        help="target: s3://bucket/prefix, gs://, az:// or file:///path (credentials from the "
        "cloud's standard environment; AWS_ENDPOINT_URL names an on-premises S3)",
    )
    pb.add_argument(
        "--follow",
        action="store_true",
        help="keep publishing new rows until stopped (Ctrl-C), riding out outages",
    )
    pb.add_argument(
        "--tail-interval-ms",
        type=int,
        default=5000,
        help="with --follow: how often the partly filled last shard is replaced (default 5000)",
    )
    pb.set_defaults(func=commands.cmd_publish)

    ex = sub.add_parser("export", help="copy a dataset into npy or zarr, index included")
    ex.add_argument("dataset", help="the dataset to copy")
    ex.add_argument("out", help="folder of the copy (resumed if an earlier export stopped)")
    ex.add_argument("--format", required=True, choices=FORMATS, help="format of the copy")
    ex.add_argument(
        "--shard-rows",
        type=int,
        default=Storage.shard_rows,
        help="zarr: rows per shard object (default: %(default)s)",
    )
    ex.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default=Storage.compression,
        help="zarr: codec of each row (default: %(default)s)",
    )
    ex.add_argument(
        "--level",
        type=int,
        default=Storage.compression_level,
        choices=range(1, 10),
        metavar="1-9",
        help="zarr: compression level (default: %(default)s)",
    )
    ex.set_defaults(func=commands.cmd_export)

    s = sub.add_parser("status", help="rows, rate, failures and the daemon holding a dataset")
    s.add_argument("dataset", help="dataset folder")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(func=commands.cmd_status)

    q = sub.add_parser("query", help="rows whose metadata matches, e.g. --where well=B03")
    q.add_argument("dataset", help="dataset folder")
    q.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep rows whose metadata KEY equals VALUE, compared as JSON: 3 matches the "
        "number 3, true the boolean, B03 the text (repeatable: all must hold)",
    )
    q.add_argument("--json", action="store_true", help="print JSON instead of text")
    q.set_defaults(func=commands.cmd_query)

    f = sub.add_parser("failures", help="list recorded failures")
    f.add_argument("dataset", help="dataset folder")
    f.add_argument("--reason", help="only failures with this reason")
    f.add_argument("--json", action="store_true", help="print JSON instead of text")
    f.set_defaults(func=commands.cmd_failures)

    rt = sub.add_parser("retry", help="make recorded failures eligible again")
    rt.add_argument("dataset", help="dataset folder")
    rt.add_argument(
        "--reason", help="only failures with this reason (default: all); see `failures`"
    )
    rt.set_defaults(func=commands.cmd_retry)

    pv = sub.add_parser("preview", help="contact sheet of recent rows")
    pv.add_argument("dataset", help="dataset folder")
    pv.add_argument(
        "--last", type=int, default=16, help="how many of the newest rows (default: %(default)s)"
    )
    pv.add_argument("--out", default="sheet.png", help="PNG to write (default: %(default)s)")
    pv.set_defaults(func=commands.cmd_preview)

    sm = sub.add_parser("simulate", help="write frames into a folder as an instrument does")
    sm.add_argument("directory", help="folder to write into (created if missing)")
    sm.add_argument("--count", type=int, default=100, help="frames (default: %(default)s)")
    sm.add_argument(
        "--rate", type=float, default=5.0, help="frames per second (default: %(default)s)"
    )
    sm.add_argument(
        "--shape", default="2048x2048", help="HEIGHTxWIDTH of each frame (default: %(default)s)"
    )
    sm.add_argument(
        "--dtype",
        default="uint16",
        choices=["uint8", "uint16", "float32"],
        help="sample type (default: %(default)s)",
    )
    sm.add_argument(
        "--style",
        default="mixed",
        choices=["chunked", "rename", "mixed"],
        help="chunked: written under the final name in pieces; rename: written hidden, then "
        "renamed in; mixed: alternate (default: %(default)s)",
    )
    sm.add_argument(
        "--seed", type=int, default=0, help="noise seed of the frames (default: %(default)s)"
    )
    sm.set_defaults(func=commands.cmd_simulate)

    ins = sub.add_parser("install-service", help="install or print the systemd unit")
    ins.add_argument("--config", required=True, help="the config the service will run with")
    ins.add_argument("--name", help="instance name (one unit per instrument)")
    ins.add_argument("--print", action="store_true", help="print the unit instead of installing")
    ins.set_defaults(func=commands.cmd_install_service)
    return p
