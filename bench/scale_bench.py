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
Frames' CPU per file is also given past a run's fixed start-up (spawning workers, making
the dataset: about 50 ms, measured by a one-frame run), i.e. the cost of one more file.
Every measurement is repeated in interleaved rounds (default 3) and medians are printed.
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
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import tifffile

sys.path.insert(0, str(Path(__file__).parent))
from ingest_bench import OUT, _loop_e, make_corpus, per_core, warm

RUN = """
import tiffsink.cli  # the command's process settings first (OpenBLAS single-threaded)
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
    """One `tiffsink ingest`: rows, seconds for the whole command (worker start-up
    included), the steady rows/s from its first commit to its last (what a long backfill
    runs at), and the supervisor's CPU seconds: all of it, the kernel's part (mostly
    fdatasync writing rows back: it grows with the row's bytes, not the number of files),
    and the main thread's (the serial part: the committer thread's fsyncs and SQLite run
    beside it on another core)."""

    rows: int
    seconds: float
    steady: float
    cpu_s: float
    kernel_s: float
    main_s: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    def per_row_ms(self, start: Run | None = None) -> tuple[float, float, float]:
        """Supervisor CPU ms per row (all, kernel, main thread); past `start`, a one-file
        run's, when given: the cost of one more file, without the run's fixed start-up."""
        base = start or Run(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        n = self.rows - base.rows
        return (
            (self.cpu_s - base.cpu_s) * 1000 / n,
            (self.kernel_s - base.kernel_s) * 1000 / n,
            (self.main_s - base.main_s) * 1000 / n,
        )


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
    rate = res["rows"] / res["seconds"]
    steady = res["steady"] or rate
    return Run(res["rows"], res["seconds"], steady, res["cpu_s"], res["sys_s"], res["main_s"])


def median_run(runs: list[Run]) -> Run:
    """Each figure's median over rounds of the same run."""
    return Run(*(statistics.median(getattr(r, f) for r in runs) for f in Run._fields))


def startup(frame: Path, workers: int, work: Path) -> Run:
    """The median (by supervisor CPU) of three runs over one frame: the fixed cost of a run
    (spawning workers, creating the dataset and its index, the last fsyncs)."""
    one = work / "one-frame"
    one.mkdir(exist_ok=True)
    if not (one / frame.name).exists():
        shutil.copy(frame, one / frame.name)
    runs = sorted((ingest(one, workers, work) for _ in range(3)), key=lambda r: r.cpu_s)
    return runs[1]


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
    ap.add_argument("--rounds", type=int, default=3, help="interleaved; medians reported")
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
    # Rounds interleave every measurement and report medians: on this shared machine one
    # run's ratio to (e) moves by 0.1 or more from minutes to minutes.
    got: dict[int, list[tuple[float, Run, Run, Run, Run]]] = {w: [] for w in counts}
    for _ in range(args.rounds):
        for w in counts:
            # Warmed before each: this VM's page cache holds ~13 GB, and other corpora or
            # the datasets written evict frames, which would then time the disk instead.
            warm(frames)
            big = ingest(frames[0].parent, w, work)
            warm(frames)
            e = per_core(_loop_e, names, w, e_args)
            start = startup(frames[0], w, work)
            got[w].append((e, big, start, ingest(small, w, work), ingest(small, w, work, (64, 64))))
    rows = []
    for w in counts:
        e = statistics.median(r[0] for r in got[w])
        rows.append((w, e, *(median_run([r[k] for r in got[w]]) for k in range(1, 5))))
    print(
        f"cores here: {os.cpu_count()}; default corpus {len(frames)} x 2048x2048 uint16, "
        f"small corpus {args.small} x 64x64 uint16; rows 512x512 uint16, and for the last "
        "columns the small corpus kept at 64x64 rows. img/s: the whole command, worker "
        "start-up included; steady: from the first commit to the last. sup: the supervisor "
        "process's CPU per file, ms (+1: past a one-frame run's start-up; kernel: its part in "
        "the kernel; main: its main thread's, past start-up for frames)\n"
    )
    print(
        f"{'workers':>7} {'img/s':>7} {'steady':>7} {'(e)':>7} {'/(e)':>5} {'st/(e)':>6} "
        f"{'sup':>6} {'sup +1':>6} {'main':>6} {'start':>6} | {'small/s':>7} {'sup':>6} "
        f"{'kernel':>6} {'main':>6} | {'64²/s':>6} {'sup':>6} {'kernel':>6} {'main':>6}"
    )
    for w, e, big, start, sm, tiny in rows:
        sup, _, _ = big.per_row_ms()
        sup1, _, main1 = big.per_row_ms(start)
        s_sup, s_k, s_main = sm.per_row_ms()
        t_sup, t_k, t_main = tiny.per_row_ms()
        print(
            f"{w:7d} {big.rate:7.1f} {big.steady:7.1f} {e:7.1f} {big.rate / e:5.2f} "
            f"{big.steady / e:6.2f} {sup:6.3f} {sup1:6.3f} {main1:6.3f} "
            f"{start.cpu_s * 1000:4.0f}ms | {sm.rate:7.0f} {s_sup:6.3f} {s_k:6.3f} {s_main:6.3f} "
            f"| {tiny.rate:6.0f} {t_sup:6.3f} {t_k:6.3f} {t_main:6.3f}"
        )
    w, e, big, start, sm, _tiny = rows[-1]
    per_worker = big.steady / w
    sup1, _, main1 = big.per_row_ms(start)
    cap = 1000 / main1
    print(
        f"\nProjection (not measured: this machine has {os.cpu_count()} cores): "
        f"{per_worker:.0f} img/s per worker (steady); the supervisor's main thread caps at "
        f"{cap:.0f} img/s ({main1:.3f} ms each; {1000 / sup1:.0f} if all its threads shared "
        f"one core), small files at {1000 / sm.per_row_ms()[2]:.0f} files/s"
    )
    for n in (int(x) for x in args.project.split(",")):
        proj = min(n * per_worker, cap)
        print(
            f"{n:7d} workers: ~{proj:.0f} img/s = {proj / (n * e / w):.2f} of (e) "
            f"({'supervisor-bound' if proj == cap else 'worker-bound'})"
        )


if __name__ == "__main__":
    main()
