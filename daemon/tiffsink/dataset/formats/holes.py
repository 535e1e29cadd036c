"""Give back the disk space of committed pending slots (fallocate PUNCH_HOLE).

A long backfill never idles, so pending.rows would otherwise grow by every row ever
written. Where the filesystem cannot punch holes, the space comes back when the pipeline
next idles and the file is truncated.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Deallocate bytes offset..offset+length of `fd`; OSError where unsupported."""
    if length <= 0:
        return
    mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
    if _libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
