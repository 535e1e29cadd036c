"""Backfill throughput of `tiffsink ingest` against the ways people do it today.

One command, one run, ratios against baselines measured in the same run (machines here
are noisy, so absolute numbers from different runs do not compare):

  python bench/ingest_bench.py                      # default corpus, 1000 files
  python bench/ingest_bench.py --kind lzw --files 300
  python bench/ingest_bench.py --memory             # supervisor peak RSS, 1k vs 10k files

Baselines, all over the same files with the page cache warm, to 512x512:
  (a) the seed script: serial cv2.imread + resize + np.vstack (quadratic), <= 1000 files
  (b) one multiprocessing.Process filling a shared_memory array
  (c) multiprocessing.Pool returning arrays by pickle
  (d) the limit: one bare cv2.imread + resize loop per core (default malloc, and tuned)
  (e) the physical limit: per core, raw pixel bytes read into a preallocated buffer plus
      an INTER_AREA resize into a preallocated output (uncompressed corpus only)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing import shared_memory
from pathlib import Path

import cv2
import numpy as np
import tifffile

OUT = (512, 512)
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "4294967296"}


# -- corpus ----------------------------------------------------------------------------
def make_corpus(root: Path, kind: str, n: int, shape: tuple[int, int]) -> list[Path]:
    d = root / f"corpus-{kind}-{shape[0]}x{shape[1]}-{n}"
    files = sorted(d.glob("*.tif")) if d.exists() else []
    if len(files) == n:
        return files
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    h, w = shape
    base16 = (rng.integers(0, 4096, size=(h, w), dtype=np.uint16) // 16 * 16).astype(np.uint16)
    for i in range(n):
        p = d / f"img_{i:06d}.tif"
        if kind == "uncompressed":
            tifffile.imwrite(p, np.roll(base16, i, axis=1))
        elif kind == "lzw":
            tifffile.imwrite(p, np.roll(base16, i, axis=1), compression="lzw", predictor=True)
        elif kind == "rgb8":
            rgb = np.stack([np.roll(base16, i + k, axis=0) >> 4 for k in range(3)], -1)
            tifffile.imwrite(p, rgb.astype(np.uint8), photometric="rgb")
        else:
            raise SystemExit(f"unknown kind {kind}")
    return sorted(d.glob("*.tif"))


def warm(files: list[Path]) -> None:
    for p in files:
        with open(p, "rb") as fh:
            while fh.read(1 << 24):
                pass


def read_resize(p: str) -> np.ndarray:
    img = cv2.imread(p, cv2.IMREAD_UNCHANGED)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return cv2.resize(img, OUT, interpolation=cv2.INTER_AREA)


# -- baselines -----------------------------------------------------------------------------
def a_serial_vstack(files: list[str]) -> float:
    t0 = time.perf_counter()
    arr = None
    for p in files:
        img = read_resize(p)[None]
        arr = img if arr is None else np.vstack([arr, img])
    return len(files) / (time.perf_counter() - t0)


def _fill_shm(name: str, files: list[str], dtype: str) -> None:
    shm = shared_memory.SharedMemory(name=name)
    out = np.ndarray((len(files), *OUT), dtype=dtype, buffer=shm.buf)
    for i, p in enumerate(files):
        out[i] = read_resize(p)
    del out
    shm.close()


def b_one_process_shm(files: list[str], dtype: str) -> float:
    size = len(files) * OUT[0] * OUT[1] * np.dtype(dtype).itemsize
    shm = shared_memory.SharedMemory(create=True, size=size)
    try:
        t0 = time.perf_counter()
        proc = mp.get_context("spawn").Process(target=_fill_shm, args=(shm.name, files, dtype))
        proc.start()
        proc.join()
        return len(files) / (time.perf_counter() - t0)
    finally:
        shm.close()
        shm.unlink()


def c_pool_pickle(files: list[str], cores: int) -> float:
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(cores) as pool:
        arrays = pool.map(read_resize, files, chunksize=8)
    np.stack(arrays)
    return len(files) / (time.perf_counter() - t0)


def _loop_d(files: list[str], q: mp.Queue) -> None:  # type: ignore[type-arg]
    cv2.setNumThreads(1)
    t0 = time.perf_counter()
    for p in files:
        read_resize(p)
    q.put(time.perf_counter() - t0)


def _loop_e(
    files: list[str], offset: int, nbytes: int, shape: tuple[int, int], dtype: str, q: mp.Queue
) -> None:  # type: ignore[type-arg]
    cv2.setNumThreads(1)
    buf = np.empty(nbytes, np.uint8)
    src = buf.view(dtype).reshape(shape)
    dst = np.empty(OUT, dtype)
    t0 = time.perf_counter()
    for p in files:
        fd = os.open(p, os.O_RDONLY)
        os.preadv(fd, [buf], offset)
        os.close(fd)
        cv2.resize(src, OUT, dst=dst, interpolation=cv2.INTER_AREA)
    q.put(time.perf_counter() - t0)


def per_core(
    target: object,
    files: list[str],
    cores: int,
    extra: tuple[object, ...] = (),
    env: dict[str, str] | None = None,
) -> float:
    """One process per core over its share of the files; rate = files / slowest share."""
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        procs = [
            ctx.Process(target=target, args=(files[k::cores], *extra, q)) for k in range(cores)
        ]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    times = [q.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    del wall  # start-up excluded: the loops time themselves
    return len(files) / max(times)


def tiffsink_ingest(corpus: Path, dtype: str, cores: int, work: Path) -> tuple[float, int]:
    """Run the real command in a fresh process; returns (images/s, supervisor peak RSS KiB)."""
    ds = work / "ds"
    shutil.rmtree(ds, ignore_errors=True)
    cfg = work / "bench.toml"
    cfg.write_text(
        f'[image]\nheight = {OUT[0]}\nwidth = {OUT[1]}\ndtype = "{dtype}"\n'
        f'[workers]\ncount = {cores}\n[dataset]\ndirectory = "{ds}"\n[log]\nlevel = "warning"\n'
    )
    code = (
        "import json, sys, time\n"
        # VmHWM, not ru_maxrss: ru_maxrss survives exec, so it would report the
        # peak of the bench process that forked this one.
        "def hwm():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1])\n"
        "from pathlib import Path\n"
        "from tiffsink.config import load_config\nfrom tiffsink.service.ingest import ingest\n"
        "from tiffsink.service import logs\n"
        "cfg = load_config(sys.argv[1]); logs.setup(cfg.log, sys.stderr)\n"
        "s = ingest(cfg, [Path(sys.argv[2])], progress=False)\n"
        "print(json.dumps({'rows': s.rows, 'seconds': s.seconds, 'failures': dict(s.failures),"
        " 'maxrss_kib': hwm()}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(cfg), str(corpus)],
        check=True,
        capture_output=True,
        text=True,
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["failures"]:
        raise SystemExit(f"unexpected failures: {res['failures']}")
    return res["rows"] / res["seconds"], int(res["maxrss_kib"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kind", default="uncompressed", choices=["uncompressed", "lzw", "rgb8"])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--shape", default="2048x2048")
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--work", default=None, help="where the corpus and datasets go")
    ap.add_argument("--memory", action="store_true", help="supervisor RSS for 1k vs 10k files")
    ap.add_argument("--skip", default="", help="comma list of baselines to skip: a,b,c,d,e")
    args = ap.parse_args()
    work = Path(args.work or Path(tempfile.gettempdir()) / "tiffsink-bench")
    work.mkdir(parents=True, exist_ok=True)
    cores = int(args.cores)
    if args.memory:
        memory(work, cores)
        return
    h, _, w = args.shape.partition("x")
    shape = (int(h), int(w))
    files = make_corpus(work, args.kind, args.files, shape)
    names = [str(p) for p in files]
    dtype = "uint8" if args.kind == "rgb8" else "uint16"
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    print(
        f"corpus: {len(files)} x {args.kind} {args.shape} ({size_mb / len(files):.1f} MB each)"
        f", {cores} cores, output {OUT[0]}x{OUT[1]} {dtype}"
    )
    warm(files)
    skip = set(args.skip.split(","))
    r: dict[str, float] = {}
    r["tiffsink ingest"], rss = tiffsink_ingest(files[0].parent, dtype, cores, work)
    if "a" not in skip:
        r["(a) serial imread + np.vstack"] = a_serial_vstack(names[:1000])
    if "b" not in skip:
        r["(b) one Process -> shared_memory"] = b_one_process_shm(names, dtype)
    if "c" not in skip:
        r["(c) Pool.map, arrays by pickle"] = c_pool_pickle(names, cores)
    if "d" not in skip:
        r["(d) bare imread+resize per core"] = per_core(_loop_d, names, cores)
        r["(d') same, tuned malloc"] = per_core(_loop_d, names, cores, env=TUNED_MALLOC)
    if "e" not in skip and args.kind == "uncompressed":
        with tifffile.TiffFile(files[0]) as tf:
            page = tf.pages[0]
            off, nbytes = page.dataoffsets[0], sum(page.databytecounts)
        r["(e) raw read + resize per core"] = per_core(
            _loop_e, names, cores, (off, nbytes, shape, dtype)
        )
    r["tiffsink ingest (again)"], rss2 = tiffsink_ingest(files[0].parent, dtype, cores, work)
    ours = (r["tiffsink ingest"] + r["tiffsink ingest (again)"]) / 2
    print(f"\n{'method':36s} {'img/s':>8s} {'tiffsink / method':>18s}")
    for k, v in r.items():
        print(f"{k:36s} {v:8.1f} {ours / v:18.2f}")
    print(f"\nsupervisor peak RSS: {max(rss, rss2) / 1024:.0f} MiB")


def memory(work: Path, cores: int) -> None:
    """Supervisor peak RSS must not grow with the number of files: 1k vs 10k small files."""
    rows = []
    for n in (1000, 10000):
        files = make_corpus(work, "uncompressed", n, (256, 256))
        rate, rss = tiffsink_ingest(files[0].parent, "uint16", cores, work)
        rows.append((n, rate, rss))
    for n, rate, rss in rows:
        print(f"{n:6d} files: {rate:8.1f} img/s, supervisor peak RSS {rss / 1024:.1f} MiB")
    print(f"RSS ratio 10k/1k: {rows[1][2] / rows[0][2]:.3f}")


if __name__ == "__main__":
    main()
