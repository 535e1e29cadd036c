"""Publishing against a real S3 API server on loopback (moto's, its own process).

  python bench/publish_bench.py                 # 600 default-corpus files
  python bench/publish_bench.py --files 300 --backlog 1000,10000

Three figures, each a ratio from this run, each on a fresh server:
- keep-up: `tiffsink ingest` of the corpus (rows/s, wall), then `tiffsink publish` of
  the resulting dataset to the server (rows/s, wall), on the same cores, in rounds
  (medians): publishing keeps up when its rate is at least the ingest rate;
- reads: a pinned snapshot's `batches(64)` (one epoch) against a plain loop of parallel
  GETs of the same shard objects (8 threads, no decoding): the rows/s ratio;
- memory: the peak RSS of `tiffsink publish` for a backlog of 10k small rows against 1k.
Both sides of each ratio run on the same machine within seconds of each other; moto's
own CPU is part of every remote figure, as a loopback server's is.
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
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from ingest_bench import make_corpus, warm  # noqa: E402
from s3server import S3Server, s3_env  # noqa: E402


def run(*args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "tiffsink", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"tiffsink {args[0]} failed: {r.stderr}")
    return time.perf_counter() - t0, r.stdout


def peak_rss_mib(*args: str) -> float:
    """Peak RSS of one `tiffsink` command, in MiB. Started from a small wrapper process:
    Linux carries a process's peak RSS across fork and exec, so a child of this (large)
    process would report this process's peak."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    cmd = [sys.executable, "-c", wrapper, sys.executable, "-m", "tiffsink", *args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1]) / 1024


def small_dataset(directory: Path, rows: int) -> None:
    """A zarr dataset of `rows` 64x64 rows, written directly (no decoding)."""
    from tiffsink.config import ImageSpec, Storage
    from tiffsink.dataset import DatasetWriter
    from tiffsink.dataset.records import RowRecord

    spec = ImageSpec(height=64, width=64, dtype="uint16")
    w = DatasetWriter(directory, spec, Storage("zarr", shard_rows=64))
    for first in range(0, rows, 1000):
        recs = []
        for r in range(first, min(rows, first + 1000)):
            w.write_row(np.full(spec.row_shape, r % 60000, np.uint16))
            recs.append(RowRecord(r, f"/f{r}.tif", 0, 1, r, "h", 64, 64, "uint16", 1, 0.0))
        w.commit(recs, [])
    w.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=600)
    ap.add_argument("--backlog", default="1000,10000")
    ap.add_argument("--rounds", type=int, default=3, help="ingest + publish rounds (medians)")
    ap.add_argument("--read-rounds", type=int, default=5)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "tiffsink-bench"))
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    files = make_corpus(work, "uncompressed", args.files, (2048, 2048))
    warm(files)  # every figure with the corpus in the page cache, as ingest_bench's
    corpus = files[0].parent
    ds = work / "publish-dataset"
    shutil.rmtree(ds, ignore_errors=True)
    cfg = work / "publish.toml"
    cfg.write_text(f'[dataset]\ndirectory = "{ds}"\nformat = "zarr"\n[log]\nlevel = "warning"\n')
    out: dict[str, object] = {"files": args.files}
    # Each figure on a server of its own: moto's state (the other figures' objects) slows
    # its requests, and none of these figures should pay for another's.
    keep = []
    for r in range(args.rounds):
        shutil.rmtree(ds, ignore_errors=True)
        srv = S3Server()
        try:
            with s3_env(srv.endpoint):
                url = srv.bucket("bench-publish") + "/ds"
                t_ingest, _ = run("ingest", str(corpus), "--config", str(cfg))
                t_publish, _ = run("publish", str(ds), url)
                keep.append((t_ingest, t_publish))
                if r == args.rounds - 1:
                    out["reads"] = reads(url, args.read_rounds)
        finally:
            srv.stop()
    rows = args.files
    t_ingest = statistics.median(t for t, _ in keep)
    t_publish = statistics.median(t for _, t in keep)
    out["ingest_rows_per_s"] = round(rows / t_ingest, 1)
    out["publish_rows_per_s"] = round(rows / t_publish, 1)
    out["publish_over_ingest"] = round(t_ingest / t_publish, 2)
    out["each_round_publish_over_ingest"] = [round(a / b, 2) for a, b in keep]
    srv = S3Server()
    try:
        with s3_env(srv.endpoint):
            mem = {}  # the wrapper keeps this process's peak out of the figure
            for n in [int(x) for x in args.backlog.split(",")]:
                small = work / f"publish-small-{n}"
                shutil.rmtree(small, ignore_errors=True)
                small_dataset(small, n)
                mem[n] = round(
                    peak_rss_mib("publish", str(small), f"{srv.bucket(f'bench-mem-{n}')}/s"), 1
                )
            out["publish_peak_rss_mib"] = mem
            ks = sorted(mem)
            out["rss_ratio_largest_over_smallest"] = round(mem[ks[-1]] / mem[ks[0]], 3)
    finally:
        srv.stop()
    print(json.dumps(out, indent=2))


def reads(url: str, rounds: int = 5) -> dict[str, object]:
    """A snapshot's batches against parallel GETs of its shard objects, rows/s, in
    alternating rounds; the figure is the median round's ratio (a loopback server on 2
    cores makes single rounds noisy)."""
    import tiffsink
    from tiffsink.dataset.remote import keys
    from tiffsink.dataset.remote.target import open_target

    ds = tiffsink.open_dataset(url).snapshot()
    n, S = len(ds), ds.storage.shard_rows
    target = open_target(url)
    shard_keys = [keys.shard_key(s, 3) for s in range((n + S - 1) // S)]
    done = []
    for epoch in range(rounds):
        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:  # the bodies as received, not copied
            sizes = list(pool.map(lambda k: len(target.get_buffer(k) or b""), shard_keys))
        t_gets = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = sum(len(b) for b in ds.batches(64, shuffle=True, seed=0, epoch=epoch))
        t_batches = time.perf_counter() - t0
        assert got == n and all(sizes)
        done.append(
            {
                "epoch": epoch,
                "gets_rows_per_s": round(n / t_gets, 1),
                "batches_rows_per_s": round(n / t_batches, 1),
                "batches_over_gets": round(t_gets / t_batches, 2),
            }
        )
    ratios = sorted(float(r["batches_over_gets"]) for r in done)
    return {"rows": n, "batches_over_gets_median": ratios[len(ratios) // 2], "rounds": done}


if __name__ == "__main__":
    main()
