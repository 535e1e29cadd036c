"""What each row shows, for training code: per-row metadata, selection, label columns.

The `meta` column of the index (JSON per row) holds the file's acquisition metadata and
the keys from its path; SQLite's JSON functions select on it. A mixin of `Dataset`, which
provides the index connection and the committed row count.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import numpy as np

from . import index


class RowMeta:
    """`meta`, `rows`, `column` and `label_counts` over the committed rows."""

    conn: sqlite3.Connection
    label: str | None

    def __len__(self) -> int:
        raise NotImplementedError

    def meta(self, row: int) -> dict[str, Any]:
        """What row `row` shows: z, c, t, channel, well, ... (empty where nothing is known)."""
        rec = index.row_record(self.conn, row)
        if rec is None or not 0 <= row < len(self):
            raise IndexError(f"row {row} is not committed (dataset has {len(self)})")
        out: dict[str, Any] = json.loads(rec.meta)
        return out

    def rows(self, **equals: Any) -> np.ndarray:
        """Row numbers whose metadata has every key equal to its value, in row order:
        `ds.rows(well="B03", channel="DAPI")`."""
        return np.asarray(index.rows_where(self.conn, equals, len(self)), dtype=np.int64)

    def column(self, key: str) -> np.ndarray:
        """One metadata key for every committed row, aligned with the rows (None where a
        row lacks it): the labels of a training set, say."""
        values = [json.loads(m).get(key) for m in index.meta_column(self.conn, len(self))]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return np.asarray(values, dtype=np.int64)
        if values and all(isinstance(v, float | int) and not isinstance(v, bool) for v in values):
            return np.asarray(values, dtype=np.float64)
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    def label_counts(self) -> dict[str, int]:
        """How many rows carry each value of the label key (empty without a label)."""
        return index.value_counts(self.conn, self.label) if self.label else {}
