"""`tiffsink simulate`: write frames into a folder the way acquisition software does.

Two styles matter because they look different to a watcher: "chunked" writes the file
under its final name in several writes with pauses in between (a camera streaming a
frame), "rename" writes a hidden temporary name and renames it into place (rsync, most
careful writers). "mixed" alternates. Frames are real TIFFs with a visible pattern and
the frame number burnt into the pixels, so a contact sheet shows they arrived in order.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

import numpy as np
import tifffile

from ..errors import ConfigError

CHUNKS = 4


def frame(i: int, shape: tuple[int, int], dtype: str, rng: np.random.Generator) -> np.ndarray:
    """A gradient with noise and a bright bar whose position encodes the frame number."""
    h, w = shape
    top = {"uint8": 255.0, "uint16": 4095.0, "float32": 1.0}[dtype]  # 12-bit camera look
    y, x = np.mgrid[0:h, 0:w]
    img = (x / max(w - 1, 1) * 0.5 + y / max(h - 1, 1) * 0.25) * top
    img += rng.normal(0, top * 0.02, size=shape)
    bar = (i * 37) % max(w - w // 16, 1)
    img[:, bar : bar + max(w // 16, 1)] = top
    out: np.ndarray = np.clip(img, 0, top).astype(dtype)
    return out


def encode(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, photometric="minisblack")
    return buf.getvalue()


def write_chunked(path: Path, data: bytes, pause_s: float, chunks: int = CHUNKS) -> None:
    """A camera streaming a frame: the final name, written in chunks with pauses."""
    with open(path, "wb") as fh:
        step = -(-len(data) // chunks)
        for k in range(0, len(data), step):
            fh.write(data[k : k + step])
            fh.flush()
            if k + step < len(data):
                time.sleep(pause_s)  # an instrument's pause between chunks, not a sync


def write_renamed(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def run_stamp(directory: Path, now: float | None = None) -> str:
    """A prefix no earlier run in `directory` used: the start time to the second, with a
    suffix if a run in the same second was there first. Each run's frames are new
    files, never new versions of an earlier run's (which the dataset would keep as
    duplicates of one name)."""
    base = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    stamp, k = base, 1
    while any(directory.glob(f"frame_{stamp}_*")):
        k += 1
        stamp = f"{base}-{k}"
    return stamp


def simulate(
    directory: Path,
    count: int,
    rate_hz: float,
    shape: tuple[int, int],
    dtype: str,
    style: str,
    seed: int = 0,
    chunk_pause_s: float | None = None,
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    period = 1.0 / rate_hz if rate_hz > 0 else 0.0
    pause = chunk_pause_s if chunk_pause_s is not None else period / (2 * CHUNKS)
    stamp = run_stamp(directory)
    t0 = time.monotonic()
    written = []
    for i in range(count):
        data = encode(frame(i, shape, dtype, rng))
        path = directory / f"frame_{stamp}_{i:06d}.tif"
        kind = style if style != "mixed" else ("chunked", "rename")[i % 2]
        if kind == "chunked":
            write_chunked(path, data, pause)
        else:
            write_renamed(path, data)
        written.append(path)
        nxt = t0 + (i + 1) * period
        time.sleep(max(0.0, nxt - time.monotonic()))  # pacing the arrival rate
    return written


def main(args: argparse.Namespace) -> int:
    h, _, w = args.shape.lower().partition("x")
    if not (h.isdigit() and w.isdigit() and int(h) > 0 and int(w) > 0):
        raise ConfigError(
            None, "--shape", f"must be HEIGHTxWIDTH, e.g. 2048x2048, got {args.shape!r}"
        )
    if args.count < 0 or not args.rate >= 0:
        raise ConfigError(None, "--count/--rate", "must not be negative")
    paths = simulate(
        Path(args.directory),
        args.count,
        args.rate,
        (int(h), int(w)),
        args.dtype,
        args.style,
        args.seed,
    )
    print(f"wrote {len(paths)} frames into {args.directory}")
    return 0
