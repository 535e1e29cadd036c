"""Whether this process may write a dataset folder, checked before anything is touched.

Each refusal is one line naming the folder and the reason, instead of a traceback from
the first file that happens to fail: a read-only file system, a folder this user cannot
write, or a folder owned by another user. The last one is refused even for root: a
dataset written by two users ends with files one of them cannot rewrite (an index.sqlite
owned by root stops the service user's daemon at its next commit).
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from ..errors import DatasetError
from .layout import Layout


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def check_writable(directory: Path) -> None:
    """DatasetError unless this process can create or write the dataset at `directory`."""
    if not directory.exists():
        parent = next((p for p in directory.parents if p.exists()), None)
        if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
            raise DatasetError(
                directory, f"cannot be created: {parent} is not writable by {_user(os.geteuid())}"
            )
        return
    if not directory.is_dir():
        raise DatasetError(directory, "is a file, not a folder")
    if os.statvfs(directory).f_flag & os.ST_RDONLY:
        raise DatasetError(directory, "is on a read-only file system; nothing can be committed")
    me = os.geteuid()
    lay = Layout.of(directory)
    for path in (directory, lay.index):
        try:
            owner = path.stat().st_uid
        except FileNotFoundError:
            continue
        if owner != me:
            raise DatasetError(
                path,
                f"is owned by {_user(owner)}, but tiffsink runs as {_user(me)}: files it "
                f"created would belong to another user; run as {_user(owner).split()[0]} "
                "(e.g. sudo -u)",
            )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise DatasetError(directory, f"is not writable by {_user(me)}")
