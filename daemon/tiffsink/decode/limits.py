"""The per-page size limits, checked from header facts before any decoder allocates.

Two limits, because a bomb can hide in either: `max_pixels` bounds width x height x
depth, and `max_page_bytes` bounds the decoded size, which also counts every sample per
pixel and the bytes per sample (a header declaring 65535 samples of a small image would
otherwise pass the pixel check and ask for terabytes).
"""

from __future__ import annotations

from ..config import ImageSpec
from ..errors import DecodeError


class Limits:
    """The checks of one spec; shared by every decode route."""

    def __init__(self, spec: ImageSpec) -> None:
        self.max_pixels, self.max_bytes = spec.max_pixels, spec.max_page_bytes

    def check(
        self,
        path: str,
        page: int,
        width: int,
        height: int,
        depth: int,
        samples: int,
        bytes_per_sample: int,
    ) -> None:
        """Raise `too_large` when page `page` declares more than the limits allow."""
        pixels = width * height * depth
        if pixels > self.max_pixels:
            raise DecodeError(
                path, "too_large", f"page {page} declares {pixels} pixels > max_pixels"
            )
        nbytes = pixels * samples * bytes_per_sample
        if nbytes > self.max_bytes:
            raise DecodeError(
                path,
                "too_large",
                f"page {page} declares {width}x{height}x{depth} pixels of {samples} samples of "
                f"{bytes_per_sample} bytes = {nbytes} bytes > max_page_bytes",
            )


def bytes_per_sample(bits: int) -> int:
    """What a decoder allocates per sample of `bits` bits (1-bit samples take a byte)."""
    return max(1, (bits + 7) // 8)
