"""The local pipeline vs a Dask LocalCluster on the same cores, into the same zarr format.

  python bench/cluster_bench.py                      # 600 default-corpus files, 3 rounds
  python bench/cluster_bench.py --kind lzw --files 200

Each round ingests the same warm corpus into a fresh zarr dataset with `tiffsink ingest`
(local) and `tiffsink ingest --scheduler local` (a LocalCluster of as many worker
processes as the local pool has, one thread each); rounds alternate, and the overhead is
the ratio of the medians from this run. The cluster's time includes starting the
LocalCluster, as a user's run does.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ingest_bench import make_corpus


def run(corpus: Path, work: Path, name: str, workers: int, scheduler: str | None) -> float:
    ds = work / f"ds-{name}"
    shutil.rmtree(ds, ignore_errors=True)
    cfg = work / f"{name}.toml"
    cfg.write_text(
        f'[dataset]\ndirectory = "{ds}"\nformat = "zarr"\n'
        f'[workers]\ncount = {workers}\n[log]\nlevel = "warning"\n'
    )
    cmd = [sys.executable, "-m", "tiffsink", "ingest", str(corpus), "--config", str(cfg)]
    if scheduler:
        cmd += ["--scheduler", scheduler]
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


STARTUP = """
import time
t = time.perf_counter()
from distributed import Client, LocalCluster
if __name__ == "__main__":
    c = LocalCluster(n_workers=%d, threads_per_worker=1, processes=True, dashboard_address=None)
    with Client(c) as cl:
        cl.run(lambda: __import__("tiffsink.cluster.tasks"))
    c.close()
    print(time.perf_counter() - t)
"""


def startup(workers: int) -> float:
    """What a user's run pays before the first task: import, start and stop the cluster."""
    out = subprocess.run(
        [sys.executable, "-c", STARTUP % workers], check=True, capture_output=True, text=True
    )
    return float(out.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=600)
    ap.add_argument("--kind", default="uncompressed", choices=["uncompressed", "lzw"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "tiffsink-bench"))
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    corpus = make_corpus(work, args.kind, args.files, (2048, 2048))[0].parent
    times: dict[str, list[float]] = {"local": [], "dask": [], "startup": []}
    for _ in range(args.rounds):
        times["local"].append(run(corpus, work, "local", args.workers, None))
        times["dask"].append(run(corpus, work, "dask", args.workers, "local"))
        times["startup"].append(startup(args.workers))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "kind": args.kind,
                "files": args.files,
                "workers": args.workers,
                "rounds": args.rounds,
                "local_files_per_s": round(args.files / med["local"], 1),
                "dask_files_per_s": round(args.files / med["dask"], 1),
                "overhead_dask_over_local": round(med["dask"] / med["local"], 2),
                "cluster_startup_s": round(med["startup"], 2),
                "overhead_without_startup": round((med["dask"] - med["startup"]) / med["local"], 2),
                "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
