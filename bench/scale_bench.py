"""How `tiffsink ingest` scales with workers, and where one supervisor would cap it.

For each worker count (default 1 and 2, as many as this machine has cores), in one run:
  - the default corpus (2048x2048 uint16 frames into 512x512 rows): images/s, the ratio
    to (e), the physical limit at the same core count (raw read + INTER_AREA per core,
    defined in ingest_bench.py), and the supervisor's CPU per file;
  - a small-file corpus (64x64 uint16, 20,000 files): files/s and supervisor CPU per file,
    the figure that caps scaling: one supervisor can feed at most 1 / (CPU per file).
Supervisor CPU is the supervisor process's own user+system time (its main and committer
threads), not the workers'; its main thread's share is shown apart, since that thread is
the serial part (the committer's fsyncs and SQLite release the GIL and run beside it).
Worker counts beyond the cores here are projected from the measured steady per-worker
rate and the main thread's cap, and printed as projections.

  python bench/scale_bench.py                  # workers 1,2
  python bench/scale_bench.py --workers 1,2,4,8,16 --small 20000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import tifffile

sys.path.insert(0, str(Path(__file__).parent))
from ingest_bench import OUT, _loop_e, make_corpus, per_core, warm

RUN = """
import json, resource, sys, time
from pathlib import Path
from tiffsink.config import load_config
from tiffsink.service import logs
from tiffsink.service.ingest import ingest
if __name__ == "__main__":
    cfg = load_config(sys.argv[1]); logs.setup(cfg.log, sys.stderr)
    r0, m0 = resource.getrusage(resource.RUSAGE_SELF), time.thread_time()
    s = ingest(cfg, [Path(sys.argv[2])], progress=False)
    r1, m1 = resource.getrusage(resource.RUSAGE_SELF), time.thread_time()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(json.dumps({"rows": s.rows, "seconds": s.seconds, "cpu_s": cpu,
                      "steady": s.steady_rows_per_s, "main_s": m1 - m0,
                      "sys_s": r1.ru_stime - r0.ru_stime, "failures": dict(s.failures)}))
"""


class Run(NamedTuple):
    """One `tiffsink ingest`: rows/s for the whole command (worker start-up included), the
    steady rows/s from its first commit to its last (what a long backfill runs at), and
    the supervisor's CPU per row in ms: all of it, the kernel's part (mostly fdatasync
    writing rows back: it grows with the row's bytes, not the number of files), and the
    main thread's (the serial part: the committer thread's fsyncs and SQLite run beside
    it on another core)."""

    rate: float
    steady: float
    sup_ms: float
    kernel_ms: float
    main_ms: float


def ingest(corpus: Path, workers: int, work: Path, out: tuple[int, int] = OUT) -> Run:
    """A fresh `tiffsink ingest` process of `corpus` into a new dataset."""
    ds = work / "ds"
    shutil.rmtree(ds, ignore_errors=True)
    cfg = work / "scale.toml"
    cfg.write_text(
        f'[image]\nheight = {out[0]}\nwidth = {out[1]}\ndtype = "uint16"\n'
        f'[workers]\ncount = {workers}\n[dataset]\ndirectory = "{ds}"\n[log]\nlevel = "warning"\n'
    )
    script = work / "run_ingest.py"
    script.write_text(RUN)
    done = subprocess.run(
        [sys.executable, str(script), str(cfg), str(corpus)],
        check=True,
        capture_output=True,
        text=True,
    )
    res = json.loads(done.stdout.strip().splitlines()[-1])
    if res["failures"]:
        raise SystemExit(f"unexpected failures: {res['failures']}")
    shutil.rmtree(ds, ignore_errors=True)
    per_row = 1000 / res["rows"]
    rate = res["rows"] / res["seconds"]
    return Run(
        rate,
        res["steady"] or rate,
        res["cpu_s"] * per_row,
        res["sys_s"] * per_row,
        res["main_s"] * per_row,
    )


def small_corpus(work: Path, n: int) -> Path:
    """n copies of one 64x64 uint16 frame, 1000 to a folder."""
    root = work / f"small-{n}"
    if (root / "done").exists():
        return root / "files"
    shutil.rmtree(root, ignore_errors=True)
    files = root / "files"
    import io

    import numpy as np

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.random.default_rng(0).integers(0, 65535, (64, 64), np.uint16))
    for i in range(n):
        d = files / f"{i // 1000:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:06d}.tif").write_bytes(buf.getvalue())
    (root / "done").touch()
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--files", type=int, default=1000, help="default-corpus frames")
    ap.add_argument("--small", type=int, default=20000, help="small files")
    ap.add_argument("--project", default="4,8,16", help="worker counts to project")
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = Path(args.work or Path(tempfile.gettempdir()) / "tiffsink-bench")
    work.mkdir(parents=True, exist_ok=True)
    counts = [int(x) for x in args.workers.split(",")]
    frames = make_corpus(work, "uncompressed", args.files, (2048, 2048))
    small = small_corpus(work, args.small)
    with tifffile.TiffFile(frames[0]) as tf:
        page = tf.pages[0]
        e_args = (page.dataoffsets[0], sum(page.databytecounts), (2048, 2048), "uint16")
    names = [str(p) for p in frames]
    rows = []
    for w in counts:
        # Warmed before each: this VM's page cache holds ~13 GB, and other corpora or the
        # datasets written evict frames, which would then time the disk instead.
        warm(frames)
        big = ingest(frames[0].parent, w, work)
        warm(frames)
        e = per_core(_loop_e, names, w, e_args)
        rows.append((w, e, big, ingest(small, w, work), ingest(small, w, work, (64, 64))))
    print(
        f"cores here: {os.cpu_count()}; default corpus {len(frames)} x 2048x2048 uint16, "
        f"small corpus {args.small} x 64x64 uint16; rows 512x512 uint16, and for the last "
        "columns the small corpus kept at 64x64 rows. img/s: the whole command, worker "
        "start-up included; steady: from the first commit to the last. sup: the supervisor "
        "process's CPU (kernel: its part in the kernel; main: its main thread's)\n"
    )
    print(
        f"{'workers':>7} {'img/s':>7} {'steady':>7} {'(e)':>7} {'/(e)':>5} {'st/(e)':>6} "
        f"{'sup ms':>6} {'main':>6} | {'small/s':>7} {'sup ms':>6} {'kernel':>6} {'main':>6} "
        f"| {'64²/s':>6} {'sup ms':>6} {'kernel':>6} {'main':>6}"
    )
    for w, e, big, sm, tiny in rows:
        print(
            f"{w:7d} {big.rate:7.1f} {big.steady:7.1f} {e:7.1f} {big.rate / e:5.2f} "
            f"{big.steady / e:6.2f} {big.sup_ms:6.3f} {big.main_ms:6.3f} | "
            f"{sm.rate:7.0f} {sm.sup_ms:6.3f} {sm.kernel_ms:6.3f} {sm.main_ms:6.3f} | "
            f"{tiny.rate:6.0f} {tiny.sup_ms:6.3f} {tiny.kernel_ms:6.3f} {tiny.main_ms:6.3f}"
        )
    w, e, big, sm, _tiny = rows[-1]
    per_worker = big.steady / w
    cap = 1000 / big.main_ms
    print(
        f"\nProjection (not measured: this machine has {os.cpu_count()} cores): "
        f"{per_worker:.0f} img/s per worker (steady); the supervisor's main thread caps at "
        f"{cap:.0f} img/s ({big.main_ms:.3f} ms each; {1000 / big.sup_ms:.0f} if all its "
        f"threads shared one core), small files at {1000 / sm.main_ms:.0f} files/s"
    )
    for n in (int(x) for x in args.project.split(",")):
        proj = min(n * per_worker, cap)
        print(
            f"{n:7d} workers: ~{proj:.0f} img/s = {proj / (n * e / w):.2f} of (e) "
            f"({'supervisor-bound' if proj == cap else 'worker-bound'})"
        )


if __name__ == "__main__":
    main()
