"""`tiffsink verify` for both zarr formats: zarr.json, the OME metadata and every shard index.

Reads only zarr.json files and each shard's index (not the chunks), so it is quick on a
large dataset. A lagging shape or data past the committed rows is a note while a writer
holds the dataset (a commit in progress), a problem otherwise.
"""

from __future__ import annotations

import json
import os

from ....config import ImageSpec, Storage
from ...layout import ARRAY, Layout
from . import ome, shard


def check_zarr(
    lay: Layout, spec: ImageSpec, storage: Storage, n: int, busy: bool, fixed_slots: bool
) -> tuple[list[str], list[str]]:
    """(problems, notes) about images.zarr given `n` committed rows. With `fixed_slots`
    (uncompressed rows) a shard's index names every slot from the start, so chunks past
    the committed rows say nothing."""
    problems: list[str] = []
    notes: list[str] = []
    array = lay.zarr / ARRAY

    def lag(msg: str) -> None:
        (notes if busy else problems).append(msg)

    try:
        group = json.loads((lay.zarr / "zarr.json").read_bytes())
        doc = json.loads((array / "zarr.json").read_bytes())
    except (OSError, ValueError) as e:
        return [f"{lay.zarr}: unreadable zarr.json: {e}"], notes
    attrs = group.get("attributes", {}).get("ome", {})
    if attrs.get("version") != "0.5" or not attrs.get("multiscales"):
        problems.append(f"{lay.zarr}/zarr.json: no OME-Zarr 0.5 multiscales")
    diffs = ome.same_layout(doc, ome.array_template(spec, storage))
    if diffs:
        problems.append(f"{array}/zarr.json: differs from the spec in {', '.join(diffs)}")
        return problems, notes
    shape_n = int(doc["shape"][0])
    if shape_n > n:
        problems.append(f"{array}/zarr.json: shape claims {shape_n} rows, index committed {n}")
    elif shape_n < n:
        lag(f"{array}/zarr.json: shape says {shape_n} rows, index committed {n} (not raised)")
    S = storage.shard_rows
    last = (n - 1) // S if n else -1
    ndim = len(doc["shape"])
    for s in range(last + 1):
        path = shard.path(array, s, ndim)
        want = S if s < last else n - s * S
        try:
            present = shard.read_present(path, S)
        except FileNotFoundError:
            problems.append(f"{path}: missing, but it holds committed rows")
            continue
        except (OSError, shard.ShardError) as e:
            problems.append(f"{path}: {e}")
            continue
        if not all(present[:want]):
            problems.append(f"{path}: holds {sum(present[:want])} of its {want} committed rows")
        if not fixed_slots and any(present[want:]):
            lag(f"{path}: holds rows past the committed ones (an unfinished batch)")
    cdir = array / "c"
    beyond = (
        [e for e in os.listdir(cdir) if not e.isdigit() or int(e) > last] if cdir.is_dir() else []
    )
    if beyond:
        lag(f"{cdir}: {len(beyond)} shard(s) past the committed rows (an unfinished batch)")
    if lay.pending.exists() and lay.pending.stat().st_blocks:
        lag(f"{lay.pending}: uncommitted rows pending")
    return problems, notes
