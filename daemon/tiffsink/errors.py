"""The error hierarchy: every error tiffsink raises on purpose is a TiffsinkError.

Each error carries the path it is about (a file, a dataset, a config file) and a
reason a person can act on, so a message in the journal names both without the
caller having to format anything.
"""

from __future__ import annotations

import os


class TiffsinkError(Exception):
    """Base class: something about `path` is wrong for `reason`."""

    def __init__(self, path: str | os.PathLike[str] | None, reason: str) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class ConfigError(TiffsinkError):
    """A config key is unknown or has a value outside what is allowed."""

    def __init__(self, path: str | os.PathLike[str] | None, key: str, reason: str) -> None:
        self.key = key
        super().__init__(path, f"{key}: {reason}" if key else reason)


class DatasetError(TiffsinkError):
    """The dataset cannot be used as asked (corrupt, incompatible, unreadable)."""


class RestartableError(TiffsinkError):
    """A fault of the running process that a restart may cure (never a config problem).

    The CLI exits with EX_TEMPFAIL (75), which systemd's Restart=on-failure restarts;
    exit 2 stays reserved for what a restart cannot fix.
    """


class DatasetIOError(DatasetError, RestartableError):
    """An I/O error (EIO, ENOSPC from fsync) while committing: never retried in-process.

    The CLI exits with EX_TEMPFAIL (75) so systemd restarts the service and recovery runs.
    """


class DatasetLostError(DatasetIOError):
    """index.sqlite or the rows' file was deleted or replaced under the running writer:
    nothing more is committed into it and no source is moved or deleted."""


class DatasetFullError(DatasetError):
    """No space for the rows or index of a batch: nothing was committed, try again later."""


class DatasetLockedError(DatasetError):
    """Another process holds the dataset's writer lock."""

    def __init__(self, path: str | os.PathLike[str], pid: int | None) -> None:
        self.pid = pid
        holder = f"PID {pid}" if pid else "another process (PID unknown)"
        super().__init__(path, f"dataset is locked for writing by {holder}; one writer at a time")


class SpecMismatchError(DatasetError):
    """The config's image spec differs from the one the dataset was created with."""

    def __init__(
        self, path: str | os.PathLike[str], diffs: dict[str, tuple[object, object]]
    ) -> None:
        self.diffs = diffs
        parts = [f"{k}: dataset has {a!r}, config has {b!r}" for k, (a, b) in diffs.items()]
        super().__init__(
            path,
            "image spec or storage differs from the dataset's, refusing to mix rows: "
            + "; ".join(parts),
        )


class ClusterError(TiffsinkError):
    """The Dask cluster cannot run this backfill (unreachable, wrong workers, wrong format)."""


class PublishError(TiffsinkError):
    """A publish target that cannot be used as asked: a bad URL, another dataset there, or a
    remote copy that is not what its own index says."""


class PublishHeldError(PublishError):
    """Another publisher holds the target's lease: two writers never share a target."""


class WorkerStartError(RestartableError):
    """Worker processes kept dying before they were ready, past the retry bound: the
    environment is broken (a missing library, no memory), not a file. Failing every file
    on it would lose nothing but hide the cause, so the run stops (exit 75) instead."""


class DecodeError(TiffsinkError):
    """A source file could not become a row; `reason` is a short machine class."""

    def __init__(self, path: str | os.PathLike[str], reason: str, detail: str) -> None:
        self.detail = detail
        super().__init__(path, reason)
        # The message shows both: the class for grepping, the detail for people.
        self.args = (f"{self.path}: {reason}: {detail}",)


# Every reason a file version can be recorded as failed with, and what it means: `tiffsink
# retry --reason` accepts only these, and docs/operations.md explains each.
FAILURE_REASONS: dict[str, str] = {
    "empty": "the file has 0 bytes",
    "truncated": "the file ends before its data does",
    "changed_during_read": "the file changed while it was read",
    "vanished": "the file went away before it was read",
    "not_tiff": "not a TIFF file",
    "corrupt": "no reader could decode it",
    "too_large": "a page is larger than [image] max_pixels or max_page_bytes",
    "unsupported_layout": "a layout no reader maps to gray or RGB",
    "timeout": "decoding took longer than [workers] timeout_s",
    "decoder_crash": "the decoder process died on it twice",
    "out_of_memory": "decoding ran out of memory",
    "decoder_error": "an unexpected error in the decoder (a bug)",
    "unreadable": "permission denied",
    "not_regular": "not a regular file",
    "symlink_outside_root": "a symlink that points outside the watched folder",
    "dangling_symlink": "a symlink that points nowhere",
    "no_metadata_match": "the path does not match [metadata] path_pattern (on_mismatch = fail)",
}
