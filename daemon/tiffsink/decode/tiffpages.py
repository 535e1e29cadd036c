"""tifffile's reading of one page, checked and shown as viewers show it.

The limits are checked from the page's declared shape and sample size before tifffile
allocates; its 5-D samples become (H, W, S) and then gray or RGB by the TIFF rule
(samples.py). Any exception from tifffile is the file's fault: `corrupt`, with its text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import numpy as np

from ..errors import DecodeError
from .limits import Limits, bytes_per_sample
from .samples import describe, normalize
from .scratch import Array
from .tiffheader import fit_counts, strip_bytes

T = TypeVar("T")
P = ParamSpec("P")


def page_samples(path: str, size: int, i: int, page: Any, limits: Limits) -> Array:
    """Page i's samples as a viewer shows them; limits checked before decoding."""
    shaped = tuple(int(x) for x in page.shaped)
    if min(shaped) <= 0:  # cv2.resize would fail on it with cv2.error
        raise DecodeError(path, "corrupt", f"page {i} has empty shape {shaped}")
    samples = shaped[0] * shaped[4]
    itemsize = page.dtype.itemsize if page.dtype is not None else 0
    nbytes = max(itemsize, bytes_per_sample(max(_tuple(page.bitspersample))))
    limits.check(path, i, shaped[3], shaped[2], shaped[1], samples, nbytes)
    ends = [o + c for o, c in zip(*_extent(page, size), strict=False)]
    if max(ends, default=0) > size:
        raise DecodeError(path, "truncated", f"page {i} data ends at {max(ends)}, file {size}")
    if shaped[1] != 1:
        raise DecodeError(path, "unsupported_layout", f"volumetric page (depth {shaped[1]})")
    codec = getattr(page.compression, "name", f"compression {page.compression}")
    layout = describe(samples, page.photometric, codec, page.is_tiled)
    arr = guard(path, page.asarray, maxworkers=1)
    a = guard(path, arr.reshape, shaped)
    a = np.moveaxis(a[:, 0, :, :, 0], 0, -1) if shaped[0] > 1 else a[0, 0]
    inkset = int(page.tags.valueof(332, 1))
    jpeg = page.compression in (6, 7)
    return normalize(path, a, page.photometric, page.colormap, inkset, layout, jpeg)


def _extent(page: Any, size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The page's strip or tile offsets and byte counts; an uncompressed strip's count
    that runs past the file is what its geometry needs (tiffheader.fit_counts)."""
    offsets, counts = tuple(page.dataoffsets), tuple(page.databytecounts)
    if (
        page.compression != 1
        or page.is_tiled
        or max(map(sum, zip(offsets, counts, strict=False)), default=0) <= size
    ):
        return offsets, counts
    bits = _tuple(page.bitspersample)[0]
    rps = int(page.rowsperstrip or 0)
    need = strip_bytes(page.imagewidth, page.imagelength, page.samplesperpixel, bits,
                       int(page.planarconfig), rps, len(counts))  # fmt: skip
    return (offsets, counts) if need is None else (offsets, fit_counts(offsets, counts, size, need))


def _tuple(v: int | tuple[int, ...]) -> tuple[int, ...]:
    return v if isinstance(v, tuple) else (v,)


def guard(path: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a decoder call; its failures are the file's fault: `corrupt`, with the text."""
    try:
        return fn(*args, **kwargs)
    except (DecodeError, MemoryError):
        raise
    except Exception as e:
        raise DecodeError(path, "corrupt", f"{type(e).__name__}: {e}") from None
