"""`tiffsink preview`: a contact sheet of the latest rows, labelled with their sources.

For a person to see at a glance that frames arrive, look like the instrument's images
and are not black, clipped or scrambled. Each tile is windowed to 8 bits on its own
(`dataset.display`, the rule the dashboard uses too).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from ..dataset.display import to_u8
from ..dataset.opener import open_dataset
from ..errors import DatasetError

TILE = 256
LABEL_H = 18


def contact_sheet(dataset: Path, last: int, out: Path) -> Path:
    with open_dataset(dataset) as ds:
        n = len(ds)
        if n == 0:
            raise DatasetError(dataset, "no committed rows to preview yet")
        rows = list(range(max(0, n - last), n))
        cols = math.ceil(math.sqrt(len(rows)))
        grid_rows = math.ceil(len(rows) / cols)
        sheet = np.zeros((grid_rows * (TILE + LABEL_H), cols * TILE, 3), np.uint8)
        for k, r in enumerate(rows):
            img = to_u8(ds.take([r])[0])
            if img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            else:
                img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            h, w = img.shape[:2]
            s = TILE / max(h, w)
            tile = cv2.resize(
                img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
            )
            y0 = (k // cols) * (TILE + LABEL_H)
            x0 = (k % cols) * TILE
            sheet[y0 : y0 + tile.shape[0], x0 : x0 + tile.shape[1]] = tile
            rec = ds.record(r)
            label = f"#{r} {os.path.basename(rec.source)}"
            if rec.page:
                label += f" p{rec.page}"
            cv2.putText(
                sheet,
                label[:34],
                (x0 + 3, y0 + TILE + 13),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.38,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), sheet):
        raise DatasetError(out, "could not write the contact sheet (is the suffix .png?)")
    return out
