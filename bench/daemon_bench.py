"""The daemon under a steady stream: arrival-to-commit latency, pending files, memory.

  python bench/daemon_bench.py                 # 80% of the measured pool maximum, 60 s
  python bench/daemon_bench.py --rate 200 --seconds 120
  python bench/daemon_bench.py --page          # a browser on the dashboard all along

Frames are 2048x2048 uint16 (8 MiB, sCMOS-like). To keep disk use flat over a long run,
each arrival is a hard link of one of a few pre-written frames, renamed into the inbox
(as rsync and careful writers do); each link is a distinct file version to tiffsink.
`after_ingest = "delete"` removes the links once committed. The maximum rate is measured
first in the same run with `tiffsink ingest` over the same kind of files.

Latency is wall clock from the rename into the inbox to the daemon's `file.ingested`
log event, which is emitted only after the commit is durable.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import numpy as np
import tifffile

POOL_FILES = 32


def write_pool(folder: Path, shape: tuple[int, int]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(POOL_FILES):
        p = folder / f"pool_{i:03d}.tif"
        if not p.exists():
            tifffile.imwrite(p, rng.integers(0, 4096, shape, dtype=np.uint16))
        out.append(p)
    return out


def config(work: Path, workers: int) -> Path:
    cfg = work / "daemon.toml"
    cfg.write_text(
        f'[watch]\ndirectory = "{work / "inbox"}"\nrescan_interval_s = 0\n'
        f'[dataset]\ndirectory = "{work / "dataset"}"\n'
        f"[workers]\ncount = {workers}\n"
        '[sources]\nafter_ingest = "delete"\n'
        '[metrics]\nlisten = "127.0.0.1:0"\n'
        # file.ingested (the latency probe) is a debug event since #8.
        '[log]\nformat = "json"\nlevel = "debug"\n'
    )
    return cfg


def max_rate(work: Path, pool: list[Path], workers: int, n: int = 400) -> float:
    src = work / "maxrate"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir()
    for i in range(n):
        os.link(pool[i % len(pool)], src / f"m{i:05d}.tif")
    ds = work / "maxrate-ds"
    shutil.rmtree(ds, ignore_errors=True)
    cfg = work / "maxrate.toml"
    cfg.write_text(
        f'[dataset]\ndirectory = "{ds}"\n[workers]\ncount = {workers}\n[log]\nlevel = "warning"\n'
    )
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "tiffsink", "ingest", str(src), "--config", str(cfg)],
        check=True,
        capture_output=True,
    )
    rate = n / (time.perf_counter() - t0)
    shutil.rmtree(ds, ignore_errors=True)
    shutil.rmtree(src, ignore_errors=True)
    return rate


def rss_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=float, help="arrivals per second (default: 80%% of max)")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--work", default=None)
    ap.add_argument(
        "--page",
        action="store_true",
        help="poll the dashboard every second as its page does: /status, then every new\n"
        "thumbnail (/rows/N.png?w=256) and /latest.png",
    )
    args = ap.parse_args()
    work = Path(args.work or Path(tempfile.gettempdir()) / "tiffsink-daemon-bench")
    for d in ("inbox", "dataset", "staging"):
        shutil.rmtree(work / d, ignore_errors=True)
    pool = write_pool(work / "pool", (2048, 2048))
    for p in pool:
        p.read_bytes()  # page cache warm, as for frames just written
    top = max_rate(work, pool, args.workers)
    rate = args.rate or 0.8 * top
    print(
        f"pool maximum (tiffsink ingest, same files): {top:.1f} img/s; "
        f"arrival rate: {rate:.1f} img/s for {args.seconds:.0f} s, {args.workers} workers"
    )
    (work / "inbox").mkdir(parents=True)
    (work / "staging").mkdir()
    log_path = work / "daemon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tiffsink", "run", "--config", str(config(work, args.workers))],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        addr = None
        deadline = time.monotonic() + 60
        while addr is None and time.monotonic() < deadline:
            for line in log_path.read_text().splitlines():
                if '"metrics.listening"' in line:
                    addr = json.loads(line)["address"]
            time.sleep(0.05)  # polling the log for start-up
        if addr is None:
            raise SystemExit("daemon did not start:\n" + log_path.read_text())
        arrivals: dict[str, float] = {}
        samples: list[tuple[int, int, int]] = []  # pending, supervisor rss, workers rss
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                try:
                    st = json.load(urllib.request.urlopen(f"http://{addr}/status", timeout=2))
                    kids = sum(rss_kib(c) for c in children(proc.pid))
                    samples.append((int(st["pending"]), rss_kib(proc.pid), kids))
                except OSError:
                    pass
                stop.wait(0.5)

        page_hits = [0]

        def browse() -> None:
            seen: set[int] = set()
            while not stop.is_set():
                try:
                    st = json.load(urllib.request.urlopen(f"http://{addr}/status", timeout=5))
                    for r in st["recent"]:
                        if r["row"] not in seen:  # a browser caches rows for good
                            seen.add(r["row"])
                            urllib.request.urlopen(
                                f"http://{addr}/rows/{r['row']}.png?w=256", timeout=5
                            ).read()
                            page_hits[0] += 1
                    urllib.request.urlopen(f"http://{addr}/latest.png", timeout=5).read()
                    page_hits[0] += 2
                except OSError:
                    pass
                stop.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        if args.page:
            threading.Thread(target=browse, daemon=True).start()
        n = int(rate * args.seconds)
        t0 = time.monotonic()
        for i in range(n):
            name = f"f{i:07d}.tif"
            tmp = work / "staging" / name
            os.link(pool[i % len(pool)], tmp)
            arrivals[str(work / "inbox" / name)] = time.time()
            os.replace(tmp, work / "inbox" / name)
            delay = t0 + (i + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the arrival rate
        sent_s = time.monotonic() - t0

        def committed() -> dict[str, float]:
            out = {}
            for line in log_path.read_text().splitlines():
                if '"file.ingested"' in line:
                    ev = json.loads(line)
                    ts = datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00"))
                    out[ev["path"]] = ts.timestamp()
            return out

        deadline = time.monotonic() + 300
        done = committed()
        while len(done) < n and time.monotonic() < deadline:
            time.sleep(0.5)  # polling the log for the last commits
            done = committed()
        stop.set()
        sampler.join()
    finally:
        proc.terminate()
        proc.wait(60)
    lat = np.array([done[p] - arrivals[p] for p in arrivals if p in done]) * 1000
    pend = [s[0] for s in samples] or [0]
    sup = [s[1] for s in samples] or [0]
    wrk = [s[2] for s in samples] or [0]
    print(f"sent {n} files in {sent_s:.1f} s ({n / sent_s:.1f}/s); committed {len(done)}")
    print(
        f"arrival-to-commit latency: p50 {np.percentile(lat, 50):.0f} ms, "
        f"p99 {np.percentile(lat, 99):.0f} ms, max {lat.max():.0f} ms"
    )
    print(f"peak pending files: {max(pend)}")
    if args.page:
        print(f"dashboard requests served during the run: {page_hits[0]}")
    print(
        f"supervisor RSS: peak {max(sup) / 1024:.0f} MiB (first {sup[0] / 1024:.0f}, "
        f"last {sup[-1] / 1024:.0f}); workers RSS total peak {max(wrk) / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
