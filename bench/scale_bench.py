"""How `tiffsink ingest` scales with workers, and where one supervisor would cap it.

For each worker count (default 1 and 2, as many as this machine has cores), in one run:
  - the default corpus (2048x2048 uint16 frames into 512x512 rows): images/s, the ratio
    to (e), the physical limit at the same core count (raw read + INTER_AREA per core,
    defined in ingest_bench.py), and the supervisor's CPU per file;
  - a small-file corpus (64x64 uint16, 20,000 files): files/s and supervisor CPU per file,
    the figure that caps scaling: one supervisor can feed at most 1 / (CPU per file).
Supervisor CPU is the supervisor process's own user+system time (its main and committer
threads), not the workers'. Worker counts beyond the cores here are projected from the
measured per-worker rate and that cap, and printed as projections.

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

import tifffile

sys.path.insert(0, str(Path(__file__).parent))
from ingest_bench import OUT, _loop_e, make_corpus, per_core, warm

RUN = """
import json, resource, sys
from pathlib import Path
from tiffsink.config import load_config
from tiffsink.service import logs
from tiffsink.service.ingest import ingest
if __name__ == "__main__":
    cfg = load_config(sys.argv[1]); logs.setup(cfg.log, sys.stderr)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    s = ingest(cfg, [Path(sys.argv[2])], progress=False)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(json.dumps({"rows": s.rows, "seconds": s.seconds, "cpu_s": cpu,
                      "steady": s.steady_rows_per_s,
                      "sys_s": r1.ru_stime - r0.ru_stime, "failures": dict(s.failures)}))
"""


def ingest(
    corpus: Path, workers: int, work: Path, out: tuple[int, int] = OUT
) -> tuple[float, float, float, float]:
    """(rows/s, steady rows/s, supervisor CPU ms per row, of which kernel) of a fresh
    `tiffsink ingest` process. Rows/s is the whole command's, worker start-up included;
    steady is from the first commit to the last, the rate a long backfill runs at. The
    kernel part is mostly fdatasync writing the rows back: it grows with the row's bytes,
    not with the number of files."""
    ds = work / "ds"
    shutil.rmtree(ds, ignore_errors=True)
    cfg = work / "scale.toml"
    cfg.write_text(
        f'[image]\nheight = {out[0]}\nwidth = {out[1]}\ndtype = "uint16"\n'
        f'[workers]\ncount = {workers}\n[dataset]\ndirectory = "{ds}"\n[log]\nlevel = "warning"\n'
    )
    script = work / "run_ingest.py"
    script.write_text(RUN)
    out = subprocess.run(
        [sys.executable, str(script), str(cfg), str(corpus)],
        check=True,
        capture_output=True,
        text=True,
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["failures"]:
        raise SystemExit(f"unexpected failures: {res['failures']}")
    shutil.rmtree(ds, ignore_errors=True)
    per_row = 1000 / res["rows"]
    rate = res["rows"] / res["seconds"]
    return rate, res["steady"] or rate, res["cpu_s"] * per_row, res["sys_s"] * per_row


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
        rate, steady, sup_ms, _ = ingest(frames[0].parent, w, work)
        warm(frames)
        e = per_core(_loop_e, names, w, e_args)
        s_rate, _, s_ms, s_sys = ingest(small, w, work)
        n_rate, _, n_ms, n_sys = ingest(small, w, work, (64, 64))
        rows.append((w, rate, steady, e, sup_ms, s_rate, s_ms, s_sys, n_rate, n_ms, n_sys))
    print(
        f"cores here: {os.cpu_count()}; default corpus {len(frames)} x 2048x2048 uint16, "
        f"small corpus {args.small} x 64x64 uint16; rows 512x512 uint16, and for the last "
        "columns the small corpus kept at 64x64 rows\n"
    )
    print(
        "img/s: the whole command, worker start-up included; steady: from the first commit "
        "to the last\n"
    )
    print(
        f"{'workers':>7} {'img/s':>8} {'steady':>8} {'(e) img/s':>10} {'/ (e)':>6} "
        f"{'steady/(e)':>10} {'sup ms/img':>10} "
        f"{'small files/s':>13} {'sup ms/file':>11} {'(kernel)':>8} "
        f"{'64² rows files/s':>16} {'sup ms/file':>11} {'(kernel)':>8}"
    )
    for w, rate, steady, e, sup_ms, s_rate, s_ms, s_sys, n_rate, n_ms, n_sys in rows:
        print(
            f"{w:7d} {rate:8.1f} {steady:8.1f} {e:10.1f} {rate / e:6.2f} {steady / e:10.2f} "
            f"{sup_ms:10.3f} "
            f"{s_rate:13.0f} {s_ms:11.3f} {s_sys:8.3f} {n_rate:16.0f} {n_ms:11.3f} {n_sys:8.3f}"
        )
    w, _rate, steady, e, sup_ms, _s_rate, s_ms = rows[-1][:7]
    per_worker = steady / w
    cap = 1000 / sup_ms
    print(
        f"\nProjection (not measured: this machine has {os.cpu_count()} cores): "
        f"{per_worker:.0f} img/s per worker, supervisor cap {cap:.0f} img/s "
        f"({sup_ms:.3f} ms each); small files cap {1000 / s_ms:.0f} files/s"
    )
    for n in (int(x) for x in args.project.split(",")):
        proj = min(n * per_worker, cap)
        print(
            f"{n:7d} workers: ~{proj:.0f} img/s = {proj / (n * e / w):.2f} of (e) "
            f"({'supervisor-bound' if proj == cap else 'worker-bound'})"
        )


if __name__ == "__main__":
    main()
