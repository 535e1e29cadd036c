"""npy vs zarr, from one run: ingest throughput, size on disk, random-row training reads.

  python bench/format_bench.py                 # 1000 default-corpus files, 3 rounds
  python bench/format_bench.py --files 300 --rounds 1

For each storage (npy; zarr with each compression), `tiffsink ingest` of the same warm
corpus into a fresh dataset, rounds interleaved so that disk noise hits every storage
alike; the ratio is each storage's median files/s over npy's median from this run. Then,
per dataset, the read pattern of a training loop: batches of 64 random rows through
`tiffsink.open_dataset(...).rows` (npy: a memmap; zarr: zarr-python), page cache warm.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from ingest_bench import make_corpus

STORAGES = {
    "npy": {"format": "npy"},
    "zarr-none": {"format": "zarr", "compression": "none"},
    "zarr-blosc-lz4": {"format": "zarr", "compression": "blosc-lz4"},
    "zarr-zstd": {"format": "zarr", "compression": "zstd"},
    "zarr-blosc-zstd": {"format": "zarr", "compression": "blosc-zstd"},
}


def ingest(corpus: Path, work: Path, name: str, batch: str = "") -> tuple[float, float]:
    """(wall seconds of the whole command, files/s the command reports after opening);
    `batch` is the config's [batch] body (commit size), if not the default."""
    ds = work / f"ds-{name}"
    shutil.rmtree(ds, ignore_errors=True)
    cfg = work / f"{name}.toml"
    body = "\n".join(f'{k} = "{v}"' for k, v in STORAGES[name].items())
    cfg.write_text(
        f'[dataset]\ndirectory = "{ds}"\n{body}\n[batch]\n{batch}\n[log]\nlevel = "warning"\n'
    )
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "tiffsink", "ingest", str(corpus), "--config", str(cfg)],
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    # The command's own figure counts from the dataset's opening on: without start-up
    # (zarr-python's import alone is 0.2 s here, once per process).
    rate = re.search(r"throughput:\s+([\d.]+) files/s", r.stdout)
    return wall, float(rate.group(1)) if rate else float("nan")


def size_on_disk(path: Path) -> int:
    if path.is_file():
        return path.stat().st_blocks * 512
    total = 0
    for d, _, files in os.walk(path):
        total += sum(os.stat(os.path.join(d, f)).st_blocks * 512 for f in files)
    return total


def random_reads(ds_dir: Path, how: str, batches: int = 50) -> float:
    """Rows per second for batches of 64 random rows: through `Dataset.take` (memmap
    fancy indexing for npy, tiffsink's shard reader for zarr), or through zarr-python."""
    import tiffsink

    ds = tiffsink.open_dataset(ds_dir)
    rng = np.random.default_rng(0)
    n = len(ds)
    t0 = time.perf_counter()
    for _ in range(batches):
        idx = np.sort(rng.choice(n, 64, replace=False))
        batch = ds.take(idx) if how == "take" else ds.images.get_orthogonal_selection((idx,))
        assert batch.shape[0] == 64
    return batches * 64 / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "tiffsink-bench"))
    ap.add_argument("--only", default=",".join(STORAGES), help="comma-separated storages")
    ap.add_argument("--no-reads", action="store_true", help="ingest figures only")
    ap.add_argument("--max-files", type=int, help="[batch] max_files (files per commit)")
    ap.add_argument("--max-wait-ms", type=int, help="[batch] max_wait_ms")
    args = ap.parse_args()
    batch = "\n".join(
        f"{k} = {v}"
        for k, v in (("max_files", args.max_files), ("max_wait_ms", args.max_wait_ms))
        if v is not None
    )
    names = ["npy", *[n for n in args.only.split(",") if n != "npy"]]
    unknown = sorted(set(names) - set(STORAGES))
    if unknown:
        ap.error(f"--only: unknown {unknown}; choose from {sorted(STORAGES)}")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    files = make_corpus(work, "uncompressed", args.files, (2048, 2048))
    corpus = files[0].parent
    times: dict[str, list[float]] = {k: [] for k in names}
    after_open: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(args.rounds):
        for name in names:
            wall, rate = ingest(corpus, work, name, batch)
            times[name].append(wall)
            after_open[name].append(rate)
    base = args.files / statistics.median(times["npy"])
    base_open = statistics.median(after_open["npy"])
    out: dict[str, dict[str, object]] = {}
    for name in names:
        rate = args.files / statistics.median(times[name])
        ds = work / f"ds-{name}"
        rows = ds / ("images.npy" if name == "npy" else "images.zarr")
        out[name] = {
            "files_per_s": round(rate, 1),
            "ratio_to_npy": round(rate / base, 2),
            "after_open_files_per_s": round(statistics.median(after_open[name]), 1),
            "after_open_ratio_to_npy": round(statistics.median(after_open[name]) / base_open, 2),
            "mb_on_disk": round(size_on_disk(rows) / 1e6, 1),
            "each_run_files_per_s": [round(args.files / t) for t in times[name]],
        }
        if args.no_reads:
            continue
        out[name]["random_rows_per_s_take"] = round(random_reads(ds, "take"), 0)
        if name != "npy":
            out[name]["random_rows_per_s_zarr_python"] = round(random_reads(ds, "zarr"), 0)
    doc = {"files": args.files, "rounds": args.rounds, "batch": batch, "results": out}
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
