"""tiffsink against peer Zarr writers (#26): whole command against whole script.

  python bench/peers_bench.py                          # 400 default-corpus files, 3 rounds
  python bench/peers_bench.py --files 40 --rounds 1 --markdown
  python bench/peers_bench.py --peer-decode tifffile   # peers read with tifffile instead

The same warm corpus (ingest_bench's uncompressed 2048x2048 uint16 TIFFs), the same cores,
codec and row layout for every contender: a Zarr v3 array of (files, 512, 512) uint16 rows,
sharded 64 rows per shard with one row per chunk, each chunk uncompressed or zstd level 1.
Every contender decodes with cv2.imread + an INTER_AREA resize to 512x512 (tiffsink's own
decoder for tiffsink). Each peer is written as a competent user would write it: a process
pool of one worker per core decodes (a forked multiprocessing.Pool, or dask's "processes"
scheduler for dask; OpenCV's own threads off in the workers; files in sorted order), and
the peer's own writer appends:
- acquire-zarr: one ZarrStream (StreamSettings + ArraySettings, Zarr v3), every decoded
  frame appended as it arrives; its own writer threads compress and write;
- tensorstore: the zarr3 driver with the sharding_indexed codec; decoded rows collected
  into whole 64-row shards, each written with one write future (a few in flight);
- dask: da.store of an array built from delayed decodes, one delayed task per shard (64
  files) so that tasks line up with shards, into a zarr-python 3 array created with
  shards=(64, 512, 512), chunks=(1, 512, 512), under dask's "processes" scheduler.
tiffsink is the whole `tiffsink ingest CORPUS --config CFG` command (format "zarr").

Every contender runs as a fresh process, timed from its start to its exit (interpreter,
imports, pool start-up and the final flush included), after `sync` so that none pays for
another's dirty pages (tiffsink fsyncs each commit; the peers' scripts flush nothing
themselves, as such scripts seldom do, which favours the peers). Rounds are interleaved
(the order rotates each round); the figure is files / median seconds. After each run the
output is opened with zarr-python and checked: shape (files, 512, 512), uint16, the shard
and chunk shapes, the codec, and a few rows against cv2's decode of their source file
(sorted order for the peers; tiffsink's index says which file a row came from). A run
whose output is wrong is not credited. Each output is deleted before the next run. A peer
that cannot be imported is skipped, with the reason in the JSON.

cv2.imread is much slower than tifffile.imread on these uncompressed files (about 9-17 ms
against 1.2-1.6 ms per 8 MB file on the 2-core VM), so it bounds every peer;
`--peer-decode tifffile` gives the peers that faster reader (the same pixels) to show how
much of the ratio is the reader and how much the writer.

The goal (#26): tiffsink at least 2.5x the best peer, for none and for zstd.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
OUT = (512, 512)
SHARD_ROWS = 64
LEVEL = 1
CODECS = ("none", "zstd")
PEERS = ("acquire-zarr", "tensorstore", "dask")
CONTENDERS = ("tiffsink", *PEERS)
MODULES = {"acquire-zarr": "acquire_zarr", "tensorstore": "tensorstore", "dask": "dask.array"}
GOAL = 2.5


# -- the peers' scripts (run in a fresh process: `peers_bench.py --peer NAME ...`) --------
# Only the standard library is imported at module level, so a peer's process pays for
# what its own script would import (numpy, cv2, its writer) and nothing else.
def decode(path: str) -> Any:
    """cv2.imread + INTER_AREA resize to 512x512: ingest_bench.read_resize."""
    import cv2

    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"cv2 cannot read {path}")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return cv2.resize(img, OUT, interpolation=cv2.INTER_AREA)


def decode_tifffile(path: str) -> Any:
    """tifffile.imread + the same resize (--peer-decode tifffile: the same pixels, and
    much faster than cv2.imread for uncompressed TIFFs here)."""
    import cv2
    import tifffile

    return cv2.resize(tifffile.imread(path), OUT, interpolation=cv2.INTER_AREA)


DECODERS = {"cv2": decode, "tifffile": decode_tifffile}
DECODE_NAMES = {
    "cv2": "cv2.imread + cv2.resize INTER_AREA",
    "tifffile": "tifffile.imread + cv2.resize INTER_AREA",
}


def decode_many(paths: list[str], how: str) -> Any:
    """The rows of several files, stacked (one dask task per shard)."""
    import numpy as np

    _worker_init()  # dask's worker processes: one per core already
    return np.stack([DECODERS[how](p) for p in paths])


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already


def decoded(files: list[str], cores: int, how: str) -> Iterator[Any]:
    """Rows in file order, decoded by a pool of `cores` processes."""
    import multiprocessing as mp

    # The pool forks before the writer starts any thread.
    with mp.Pool(cores, initializer=_worker_init) as pool:
        yield from pool.imap(DECODERS[how], files, chunksize=4)


def run_acquire_zarr(files: list[str], out: Path, codec: str, cores: int, how: str) -> None:
    rows = decoded(files, cores, how)
    first = next(rows)  # the pool is up (forked) before the writer's library is loaded
    import acquire_zarr as aq
    import numpy as np

    dims = [
        aq.Dimension(
            name="t",
            kind=aq.DimensionType.TIME,
            array_size_px=len(files),
            chunk_size_px=1,
            shard_size_chunks=SHARD_ROWS,
        ),
        *[
            aq.Dimension(
                name=name,
                kind=aq.DimensionType.SPACE,
                array_size_px=size,
                chunk_size_px=size,
                shard_size_chunks=1,
            )
            for name, size in zip("yx", OUT, strict=True)
        ],
    ]
    compression = None
    if codec == "zstd":
        # 0.10's stub lists only Blosc, but the module has plain zstd (codecs bytes + zstd,
        # as tiffsink's and the other peers'): Compressor.ZSTD with CompressionCodec.ZSTD.
        compression = aq.CompressionSettings(
            compressor=aq.Compressor.ZSTD,  # type: ignore[attr-defined]
            codec=aq.CompressionCodec.ZSTD,  # type: ignore[attr-defined]
            level=LEVEL,
        )
    settings = aq.StreamSettings(
        store_path=str(out),
        overwrite=True,
        arrays=[aq.ArraySettings(dimensions=dims, data_type=np.uint16, compression=compression)],
    )
    stream = aq.ZarrStream(settings)
    stream.append(first)
    for row in rows:
        stream.append(row)
    stream.close()


def run_tensorstore(files: list[str], out: Path, codec: str, cores: int, how: str) -> None:
    rows = decoded(files, cores, how)
    first = next(rows)
    import numpy as np
    import tensorstore as ts

    inner: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if codec == "zstd":
        inner.append({"name": "zstd", "configuration": {"level": LEVEL}})
    spec = {
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": str(out)},
        "metadata": {
            "shape": [len(files), *OUT],
            "data_type": "uint16",
            "chunk_grid": {
                "name": "regular",
                "configuration": {"chunk_shape": [SHARD_ROWS, *OUT]},
            },
            "codecs": [
                {
                    "name": "sharding_indexed",
                    "configuration": {"chunk_shape": [1, *OUT], "codecs": inner},
                }
            ],
        },
        "create": True,
        "delete_existing": True,
    }
    arr = ts.open(spec).result()
    pending: list[Any] = []
    start = 0
    batch = np.empty((min(SHARD_ROWS, len(files)), *OUT), np.uint16)
    batch[0] = first
    filled = 1
    for row in rows:
        if filled == len(batch):
            pending.append(arr[start : start + filled].write(batch))
            start += filled
            batch = np.empty((min(SHARD_ROWS, len(files) - start), *OUT), np.uint16)
            filled = 0
            if len(pending) > 2 * cores:  # bounded memory: wait for the oldest shard
                pending.pop(0).result()
        batch[filled] = row
        filled += 1
    pending.append(arr[start : start + filled].write(batch[:filled]))
    for fut in pending:
        fut.result()


def run_dask(files: list[str], out: Path, codec: str, cores: int, how: str) -> None:
    import dask
    import dask.array as da
    import numpy as np
    import zarr
    from dask.delayed import delayed
    from zarr.codecs import ZstdCodec

    compressors: Any = ZstdCodec(level=LEVEL) if codec == "zstd" else None
    z = zarr.create_array(
        str(out),
        shape=(len(files), *OUT),
        dtype="uint16",
        shards=(SHARD_ROWS, *OUT),
        chunks=(1, *OUT),
        compressors=compressors,
        overwrite=True,
    )
    parts = []
    for s in range(0, len(files), SHARD_ROWS):
        group = files[s : s + SHARD_ROWS]
        task = delayed(decode_many)(group, how)
        part = da.from_delayed(task, shape=(len(group), *OUT), dtype=np.uint16)  # type: ignore[no-untyped-call]
        parts.append(part)
    rows = da.concatenate(parts)  # type: ignore[no-untyped-call]
    with dask.config.set(scheduler="processes", num_workers=cores):
        da.store(rows, z, lock=False)  # type: ignore[arg-type]


RUNNERS = {"acquire-zarr": run_acquire_zarr, "tensorstore": run_tensorstore, "dask": run_dask}


# -- the bench ---------------------------------------------------------------------------
def unavailable(peer: str) -> str | None:
    """Why `peer` cannot run here (its import fails in a fresh process), or None."""
    r = subprocess.run(
        [sys.executable, "-c", f"import {MODULES[peer]}"], capture_output=True, text=True
    )
    if r.returncode == 0:
        return None
    last = (r.stderr.strip().splitlines() or ["import failed"])[-1]
    return f"import {MODULES[peer]} failed: {last} (pip install -e '.[peers]')"


def tiffsink_config(work: Path, codec: str, cores: int, ds: Path) -> Path:
    cfg = work / f"peers-tiffsink-{codec}.toml"
    cfg.write_text(
        f'[image]\nheight = {OUT[0]}\nwidth = {OUT[1]}\ndtype = "uint16"\n'
        f"[workers]\ncount = {cores}\n"
        f'[dataset]\ndirectory = "{ds}"\nformat = "zarr"\nshard_rows = {SHARD_ROWS}\n'
        f'compression = "{codec}"\ncompression_level = {LEVEL}\n'
        f'[log]\nlevel = "warning"\n'
    )
    return cfg


@dataclass(frozen=True)
class Setup:
    """What every run shares: the corpus (sorted), cores, work folder, peers' decoder."""

    corpus: Path
    files: list[Path]
    cores: int
    work: Path
    how: str


def command(name: str, out: Path, codec: str, st: Setup) -> list[str]:
    if name == "tiffsink":
        cfg = tiffsink_config(st.work, codec, st.cores, out)
        return [sys.executable, "-m", "tiffsink", "ingest", str(st.corpus), "--config", str(cfg)]
    return [
        sys.executable,
        str(HERE),
        "--peer",
        name,
        "--codec",
        codec,
        "--cores",
        str(st.cores),
        "--peer-decode",
        st.how,
        "--out",
        str(out),
        str(st.corpus),
    ]


def rows_to_check(n: int) -> list[int]:
    return sorted({0, 1, min(n - 1, SHARD_ROWS), n // 2, n - 1})


def verify(name: str, out: Path, files: list[Path], codec: str) -> str | None:
    """What is wrong with the output of `name`, or None: zarr-python reads it back."""
    import numpy as np
    import zarr

    from ingest_bench import read_resize

    n = len(files)
    try:
        path = out / "images.zarr" / "0" if name == "tiffsink" else out
        z = zarr.open_array(str(path), mode="r")
        if z.shape != (n, *OUT) or z.dtype != np.uint16:
            return f"shape {z.shape} {z.dtype}, expected {(n, *OUT)} uint16"
        if z.shards != (SHARD_ROWS, *OUT) or z.chunks != (1, *OUT):
            return f"shards {z.shards} chunks {z.chunks}"
        names = [c.to_dict()["name"] for c in (*z.compressors,)]
        if names != ([] if codec == "none" else ["zstd"]):
            return f"compressors {names} for {codec}"
        check = rows_to_check(n)
        sources = {r: str(files[r]) for r in check}
        if name == "tiffsink":
            import tiffsink

            with tiffsink.open_dataset(out) as ds:
                if len(ds) != n:
                    return f"{len(ds)} committed rows, expected {n}"
                sources = {r: ds.record(r).source for r in check}
        for r in check:
            if not np.array_equal(z[r], read_resize(str(sources[r]))):
                return f"row {r} differs from {sources[r]}"
    except Exception as e:  # a bench reports, it does not crash on one contender
        return f"{type(e).__name__}: {e}"
    return None


def run_once(name: str, codec: str, st: Setup) -> tuple[float | None, str | None]:
    """(seconds from process start to exit, None) or (None, what went wrong)."""
    out = st.work / f"peers-out-{name}-{codec}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = command(name, out, codec, st)
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    try:
        if r.returncode != 0:
            return None, f"exit {r.returncode}: {r.stderr.strip()[-500:]}"
        wrong = verify(name, out, st.files, codec)
        return (None, f"wrong output: {wrong}") if wrong else (seconds, None)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def bench(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE.parent))
    from ingest_bench import make_corpus, warm

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    files = make_corpus(work, "uncompressed", args.files, (2048, 2048))
    warm(files)  # every contender with the corpus in the page cache
    corpus = files[0].parent
    st = Setup(corpus, files, args.cores, work, args.peer_decode)
    codecs = [c for c in args.codecs.split(",") if c]
    skipped = {p: why for p in PEERS if (why := unavailable(p))}
    names = [c for c in CONTENDERS if c not in skipped]
    seconds: dict[str, dict[str, list[float]]] = {c: {n: [] for n in names} for c in codecs}
    errors: dict[str, dict[str, list[str]]] = {c: {n: [] for n in names} for c in codecs}
    for k in range(args.rounds):
        order = names[k % len(names) :] + names[: k % len(names)]
        for codec in codecs:
            for name in order:
                t, err = run_once(name, codec, st)
                if t is None:
                    errors[codec][name].append(f"round {k + 1}: {err}")
                else:
                    seconds[codec][name].append(t)
    n = args.files
    results: dict[str, Any] = {}
    for codec in codecs:
        per: dict[str, Any] = {}
        for name in names:
            ts_ = seconds[codec][name]
            ok = not errors[codec][name] and ts_
            per[name] = {
                "files_per_s": round(n / statistics.median(ts_), 1) if ok else None,
                "rounds_files_per_s": [round(n / t, 1) for t in ts_],
                "rounds_s": [round(t, 3) for t in ts_],
                "verified": bool(ok),
            }
            if errors[codec][name]:
                per[name]["errors"] = errors[codec][name]
        rated = {p: per[p]["files_per_s"] for p in PEERS if p in per and per[p]["files_per_s"]}
        best = max(rated, key=lambda p: rated[p]) if rated else None
        ours = per.get("tiffsink", {}).get("files_per_s")
        results[codec] = {
            "contenders": per,
            "best_peer": best,
            "tiffsink_over_best_peer": round(ours / rated[best], 2) if ours and best else None,
        }
    return {
        "files": n,
        "rounds": args.rounds,
        "cores": args.cores,
        "corpus": f"{corpus} (uncompressed 2048x2048 uint16)",
        "row": list(OUT),
        "shard_rows": SHARD_ROWS,
        "compression_level": LEVEL,
        "peer_decode": f"{args.peer_decode}: " + DECODE_NAMES[args.peer_decode],
        "goal_tiffsink_over_best_peer": GOAL,
        "skipped": skipped,
        "results": results,
    }


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"{res['files']} files, {res['cores']} cores, median of {res['rounds']} round(s), "
        f"whole command / whole script; peers decode with {res['peer_decode']}",
        "",
        "| codec | contender | files/s | rounds (files/s) | tiffsink / this |",
        "| --- | --- | ---: | --- | ---: |",
    ]
    for codec, r in res["results"].items():
        ours = r["contenders"].get("tiffsink", {}).get("files_per_s")
        for name, c in r["contenders"].items():
            rate = c["files_per_s"]
            ratio = f"{ours / rate:.2f}" if ours and rate else "-"
            shown = f"{rate:.1f}" if rate else "failed"
            each = ", ".join(f"{v:.1f}" for v in c["rounds_files_per_s"])
            lines.append(f"| {codec} | {name} | {shown} | {each} | {ratio} |")
    lines.append("")
    for codec, r in res["results"].items():
        lines.append(
            f"- {codec}: tiffsink / best peer ({r['best_peer']}) = "
            f"**{r['tiffsink_over_best_peer']}** (goal {res['goal_tiffsink_over_best_peer']})"
        )
    for peer, why in res["skipped"].items():
        lines.append(f"- {peer} skipped: {why}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--codecs", default=",".join(CODECS), help="comma list: none,zstd")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "tiffsink-bench"))
    ap.add_argument("--markdown", action="store_true", help="also print a short table")
    ap.add_argument(
        "--peer-decode",
        choices=sorted(DECODERS),
        default="cv2",
        help="the peers' decoder: cv2.imread (default, as #26 asks) or tifffile.imread",
    )
    # One peer's script, run by the bench in a fresh process.
    ap.add_argument("--peer", choices=PEERS, help=argparse.SUPPRESS)
    ap.add_argument("--codec", choices=CODECS, default="none", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("corpus", nargs="?", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer:
        files = sorted(str(p) for p in Path(args.corpus).glob("*.tif"))
        RUNNERS[args.peer](files, Path(args.out), args.codec, args.cores, args.peer_decode)
        return
    bad = sorted(set(args.codecs.split(",")) - set(CODECS))
    if bad:
        ap.error(f"--codecs: unknown {bad}; choose from {list(CODECS)}")
    res = bench(args)
    print(json.dumps(res, indent=2))
    if args.markdown:
        print()
        print(markdown(res))


if __name__ == "__main__":
    main()
