"""`tiffsink verify` for images.npy: header against the index's spec, count and length."""

from __future__ import annotations

from ....config import ImageSpec
from ...layout import Layout
from . import header


def check_npy(lay: Layout, spec: ImageSpec, n: int, busy: bool) -> tuple[list[str], list[str]]:
    """(problems, notes) about images.npy given `n` committed rows; a lagging header or
    trailing bytes are notes while a writer holds the dataset (a commit in progress)."""
    problems: list[str] = []
    notes: list[str] = []
    lag = notes if busy else problems
    images = lay.images
    with images.open("rb") as fh:
        head = fh.read(header.HEADER_BYTES)
    try:
        header_n, shape, descr = header.parse(head)
    except (ValueError, SyntaxError) as e:
        return [f"{images}: bad header: {e}"], notes
    if shape != spec.row_shape or descr != header.descr(spec.dtype):
        problems.append(f"{images}: header rows {shape} {descr} differ from the index's spec")
    size = images.stat().st_size
    want = header.HEADER_BYTES + n * spec.row_bytes
    if size < want:
        problems.append(f"{images}: {size} bytes, but {n} committed rows need {want}")
    elif size > want:
        lag.append(f"{images}: {size - want} bytes past the committed rows (an unfinished batch)")
    if header_n > n:
        problems.append(f"{images}: header claims {header_n} rows, index committed {n}")
    elif header_n < n:
        lag.append(
            f"{images}: header says {header_n} rows, index committed {n} (header not rewritten)"
        )
    return problems, notes
