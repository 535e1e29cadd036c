"""The image spec as the index's `meta` table stores it, and the check on open.

A dataset remembers the spec its rows were made with; a writer whose config differs is
refused with every differing key, so rows of two specs can never be mixed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import __version__
from ..config import ImageSpec
from ..errors import SpecMismatchError
from . import index


def new_meta(spec: ImageSpec) -> dict[str, Any]:
    """What a new dataset's meta table starts with."""
    return {
        "image": spec.identity(),
        "format_version": index.FORMAT_VERSION,
        "tiffsink_version": __version__,
        "created_at": index.now(),
    }


def check_spec(directory: Path, stored: dict[str, Any], spec: ImageSpec) -> None:
    have, want = stored.get("image", {}), spec.identity()
    diffs = {k: (have.get(k), want[k]) for k in want if have.get(k) != want[k]}
    if diffs:
        raise SpecMismatchError(directory, diffs)


def spec_from_meta(meta: dict[str, Any]) -> ImageSpec:
    """The ImageSpec a dataset was created with (for verify and repair, which take no config)."""
    image = dict(meta["image"])
    if isinstance(image.get("intensity"), list):
        image["intensity"] = tuple(image["intensity"])
    return ImageSpec(**image)
