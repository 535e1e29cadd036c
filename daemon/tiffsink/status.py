"""`tiffsink status`: what a dataset holds and whether a daemon is writing it.

Reads only committed state through a read-only index connection, so it is safe (and
cheap) while the daemon runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from . import index
from .errors import DatasetError
from .store import IMAGES, INDEX, lock_holder


def collect(directory: Path) -> dict[str, Any]:
    idx = directory / INDEX
    if not idx.exists():
        raise DatasetError(directory, f"not a tiffsink dataset (no {INDEX})")
    conn = index.connect(idx, readonly=True)
    try:
        meta = index.read_meta(conn)
        rows = index.committed_rows(conn)
        (last,) = conn.execute("SELECT MAX(ingested_at) FROM images").fetchone()
        now = time.time()

        def since(s: float) -> int:
            (n,) = conn.execute(
                "SELECT COUNT(*) FROM images WHERE ingested_at >= ?", (now - s,)
            ).fetchone()
            return int(n)

        (files,) = conn.execute(
            "SELECT COUNT(*) FROM (SELECT DISTINCT source, size, mtime_ns FROM images)"
        ).fetchone()
        failures = dict(conn.execute("SELECT reason, COUNT(*) FROM failures GROUP BY reason"))
        last_hour = since(3600)
        return {
            "dataset": str(directory),
            "rows": rows,
            "files": int(files),
            "bytes": (directory / IMAGES).stat().st_size,
            "last_commit": last,
            "last_commit_age_s": round(now - last, 1) if last else None,
            "rows_per_s_last_minute": round(since(60) / 60, 3),
            "rows_per_s_last_hour": round(last_hour / 3600, 3),
            "rows_last_hour": last_hour,
            "failures": failures,
            "failures_total": sum(failures.values()),
            "writer_pid": lock_holder(directory),
            "image": meta.get("image"),
            "created_at": meta.get("created_at"),
            "tiffsink_version": meta.get("tiffsink_version"),
        }
    finally:
        conn.close()


def render(st: dict[str, Any]) -> str:
    def ago(s: float | None) -> str:
        return "never" if s is None else f"{s:.0f} s ago"

    img = st["image"] or {}
    pid = st["writer_pid"]
    lines = [
        f"dataset:      {st['dataset']}",
        f"rows:         {st['rows']} from {st['files']} files ({st['bytes'] / 1e9:.2f} GB)",
        f"last commit:  {ago(st['last_commit_age_s'])}",
        f"rate:         {st['rows_per_s_last_minute']:.2f} rows/s (last minute), "
        f"{st['rows_per_s_last_hour']:.2f} rows/s (last hour)",
        f"failures:     {st['failures_total']}"
        + "".join(f"\n  {r}: {n}" for r, n in sorted(st["failures"].items())),
        "writer:       " + (f"daemon running, PID {pid}" if pid else "none (not running)"),
        f"image spec:   {img.get('height')}x{img.get('width')}x{img.get('channels')} "
        f"{img.get('dtype')}, {img.get('interpolation')}, fit={img.get('fit')}, "
        f"pages={img.get('pages')}, intensity={img.get('intensity')}",
    ]
    return "\n".join(lines)
