"""Open a source file for reading without following symlinks and without blocking.

The watch folder is writable by others (instruments, users), so a name ending in .tif
may be a FIFO (a plain open would block the worker forever), a device, a directory or a
symlink to /etc/shadow. Everything but a regular file is refused with a reason; a symlink
is followed only when its fully resolved target is a regular file inside the root. The
final check reads back which file the descriptor really is (/proc/self/fd), so swapping a
parent directory for a symlink between check and open cannot smuggle a file in.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from ..errors import DecodeError

_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symlink"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _inside(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip("/") + "/")


def _os_error(path: str, e: OSError, what: str = "") -> DecodeError:
    if e.errno in (errno.EACCES, errno.EPERM):
        return DecodeError(path, "unreadable", f"permission denied{what}")
    if e.errno == errno.ENXIO:  # a socket (or a device without a driver) refuses open()
        return DecodeError(path, "not_regular", f"cannot be opened as a file ({e.strerror})")
    return DecodeError(path, "vanished", f"{e.strerror or e}{what}")


def _resolve_link(path: str, real_root: str | None) -> str:
    """The regular file a symlink finally names, if the root allows it."""
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        raise DecodeError(
            path, "dangling_symlink", f"symlink target {target} does not exist"
        ) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DecodeError(path, "dangling_symlink", "symlink loop") from None
        raise _os_error(path, e, f" on symlink target {target}") from None
    if real_root is not None and not _inside(target, real_root):
        raise DecodeError(
            path, "symlink_outside_root", f"resolves to {target}, outside {real_root}"
        )
    if not stat.S_ISREG(st.st_mode):
        raise DecodeError(path, "not_regular", f"symlink to {_kind(st.st_mode)}")
    return target


def open_source(path: str, root: str | None) -> tuple[int, os.stat_result]:
    """Open `path` read-only; returns (fd, fstat) of a regular file or raises DecodeError.

    With `root` None there is no containment rule and a symlink to a regular file is
    followed; with a root, whatever is opened must really live inside realpath(root).
    """
    real_root = os.path.realpath(root) if root is not None else None
    try:
        lst = os.lstat(path)
    except OSError as e:
        raise _os_error(path, e) from None
    target = path
    if stat.S_ISLNK(lst.st_mode):
        target = _resolve_link(path, real_root)
    elif not stat.S_ISREG(lst.st_mode):  # refuse before open: opening a device can act
        raise DecodeError(path, "not_regular", _kind(lst.st_mode))
    try:
        fd = os.open(target, _FLAGS)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DecodeError(
                path, "changed_during_read", "became a symlink while opening"
            ) from None
        raise _os_error(path, e) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DecodeError(path, "not_regular", _kind(st.st_mode))
        if real_root is not None:
            try:
                real = os.readlink(f"/proc/self/fd/{fd}").removesuffix(" (deleted)")
            except OSError:
                real = os.path.realpath(target)
            if not _inside(real, real_root):
                raise DecodeError(
                    path, "symlink_outside_root", f"resolves to {real}, outside {real_root}"
                )
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return fd, st
    except BaseException:
        os.close(fd)
        raise
