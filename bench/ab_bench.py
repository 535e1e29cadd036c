"""A/B: `tiffsink ingest` of this tree against another git revision, from one run.

  python bench/ab_bench.py REV                  # 600 default-corpus files, 3 rounds each
  python bench/ab_bench.py HEAD~3 --files 300 --rounds 5
  python bench/ab_bench.py HEAD~3 --kind lzw --files 200   # the LZW corpus

REV is checked out into a temporary git worktree and run from there (PYTHONPATH), the
working tree from here; rounds alternate on the same warm corpus into fresh npy datasets
(which tree goes first alternates too), and the ratio is the medians' (this tree's
files/s over REV's; for CPU time, this tree's over REV's).
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

HERE = Path(__file__).resolve().parent.parent


def busy_s() -> float:
    """CPU seconds this machine has spent busy (all processes), from /proc/stat: workers
    forked by a fork server are not this process's children, so its rusage misses them."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    idle, iowait = ticks[3], ticks[4]
    return (sum(ticks) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def ingest(tree: Path, corpus: Path, work: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds the machine spent meanwhile: the command, its workers,
    and whatever else ran, so only quiet runs count)."""
    ds = work / "ab-dataset"
    shutil.rmtree(ds, ignore_errors=True)
    cfg = work / "ab.toml"
    cfg.write_text(f'[dataset]\ndirectory = "{ds}"\n[log]\nlevel = "warning"\n')
    env = {**os.environ, "PYTHONPATH": str(tree / "daemon")}
    subprocess.run(["sync"], check=True)
    c0 = busy_s()
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "tiffsink", "ingest", str(corpus), "--config", str(cfg)],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    return wall, busy_s() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("rev")
    ap.add_argument("--files", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kind", default="uncompressed", choices=["uncompressed", "lzw", "rgb8"])
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "tiffsink-bench"))
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    corpus = make_corpus(work, args.kind, args.files, (2048, 2048))[0].parent
    other = Path(tempfile.mkdtemp(prefix="tiffsink-ab-"))
    subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", str(other), args.rev],
                   check=True, capture_output=True)  # fmt: skip
    try:
        times: dict[str, list[float]] = {"this": [], args.rev: []}
        cpu: dict[str, list[float]] = {"this": [], args.rev: []}
        pair = [(args.rev, other), ("this", HERE)]
        for r in range(args.rounds):  # who goes first alternates: the second run was favoured
            for key, tree in pair if r % 2 == 0 else pair[::-1]:
                wall, used = ingest(tree, corpus, work)
                times[key].append(wall)
                cpu[key].append(used)
    finally:
        subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(other)],
                       check=False, capture_output=True)  # fmt: skip
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    print(json.dumps({
        "kind": args.kind,
        "files": args.files,
        "files_per_s": {k: round(args.files / v, 1) for k, v in med.items()},
        "this_over_rev": round(med[args.rev] / med["this"], 3),
        "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "cpu_ms_per_file": {k: round(1000 * v / args.files, 2) for k, v in med_cpu.items()},
        "cpu_this_over_rev": round(med_cpu["this"] / med_cpu[args.rev], 3),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
