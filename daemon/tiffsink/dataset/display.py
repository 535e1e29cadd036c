"""Rows as 8-bit images for people: `preview`'s contact sheet and the dashboard.

Each image is contrast-stretched on its own (1st..99th percentile), because a 12-bit
camera in a uint16 row looks black otherwise.
"""

from __future__ import annotations

import cv2
import numpy as np


def to_u8(img: np.ndarray) -> np.ndarray:
    f = img.astype(np.float32)
    lo, hi = np.percentile(f, (1, 99))
    if hi <= lo:
        hi = lo + 1
    out: np.ndarray = np.clip((f - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return out


def png(row: np.ndarray, max_side: int | None = None) -> bytes:
    """One row (H, W) or (H, W, 3) as PNG bytes, windowed to 8 bits, optionally shrunk."""
    img = to_u8(row)
    img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    h, w = img.shape[:2]
    if max_side is not None and max(h, w) > max_side:
        s = max_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError("PNG encoding failed")
    return bytes(buf)
