"""The daemon's folders, checked once at start so that a mistake is one line and exit 2.

A restart cannot fix a mistaken path, so each of these is a ConfigError naming the key:
systemd's RestartPreventExitStatus=2 then stops retrying, and the journal says why. The
dataset folder's own checks (read-only, owner) are the writer's (dataset/access.py).
"""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..errors import ConfigError


def _inside(p: Path, folder: Path) -> bool:
    return p == folder or folder in p.parents


def check_folders(cfg: Config) -> None:
    """Create the inbox if needed; refuse a path that is a file, or a dataset inside the
    watched folder (tiffsink would watch its own output)."""
    where = cfg.source_file
    inbox = cfg.watch.directory.resolve()
    dataset = cfg.dataset.directory.resolve()
    if _inside(dataset, inbox):
        raise ConfigError(
            where,
            "dataset.directory",
            f"{dataset} lies inside watch.directory {inbox}: the daemon would watch its own "
            "output; put the dataset beside the inbox, not in it",
        )
    if _inside(inbox, dataset):
        raise ConfigError(
            where, "watch.directory", f"{inbox} lies inside dataset.directory {dataset}"
        )
    optional = (
        ("sources.done_directory", cfg.sources.done_directory),
        ("sources.failed_directory", cfg.sources.failed_directory),
        ("dataset.directory", cfg.dataset.directory),
    )
    for key, path in optional:
        if path is not None and path.exists() and not path.is_dir():
            raise ConfigError(where, key, f"{path} is a file, not a folder")
    if inbox.exists() and not inbox.is_dir():
        raise ConfigError(where, "watch.directory", f"{inbox} is a file, not a folder")
    try:
        inbox.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            where, "watch.directory", f"cannot create {inbox}: {e.strerror or e}"
        ) from None
