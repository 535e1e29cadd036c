"""Where a published dataset lives: a URL's object store, behind one small interface.

Publishing needs five operations with exact semantics: read an object (or learn it is
absent), replace one whole, create one only if absent, replace one only if it is still
the version read (the lease), and list keys. `ObjectTarget` serves every URL obstore
knows (`s3://`, `gs://`, `az://`, `memory://`); `LocalTarget` serves `file://` itself,
because obstore's local store neither fsyncs nor supports If-Match, and a share mounted
on the acquisition machine must survive a power cut like the dataset does. `open_target`
is the registry: the only place a URL's scheme is compared.

Credentials come from each cloud's standard chain (environment, instance roles), never
from config. An on-premises S3 is named by `AWS_ENDPOINT_URL`; plain HTTP is allowed
only when that URL says `http://`.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from abc import ABC, abstractmethod
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ...errors import PublishError
from ..fsio import fsync_dirs, make_dirs, write_atomic


class Target(ABC):
    """One published dataset's objects, by key (relative to the URL's prefix)."""

    url: str

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is none."""

    def get_buffer(self, key: str) -> memoryview | None:
        """The object as a read-only buffer, or None if absent: for a shard, which a
        reader views in place rather than copying (a bytes object by default)."""
        data = self.get(key)
        return None if data is None else memoryview(data)

    @abstractmethod
    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        """The object and its version tag (for `replace_if`), or None if absent."""

    @abstractmethod
    def put(self, key: str, data: bytes | memoryview) -> None:
        """Replace the object whole: a reader sees the old one or the new one."""

    @abstractmethod
    def create(self, key: str, data: bytes) -> str | None:
        """Create the object if absent: its version tag, or None if it exists."""

    @abstractmethod
    def replace_if(self, key: str, data: bytes, tag: str) -> str | None:
        """Replace the object if its version is still `tag`: the new tag, or None."""

    @abstractmethod
    def keys(self, prefix: str) -> list[str]:
        """Keys under `prefix` (a folder-like path), sorted."""

    @abstractmethod
    def zarr_store(self) -> Any:
        """A read-only zarr-python store over the target (for `Dataset.images`)."""


class ObjectTarget(Target):
    """A bucket (or container) through obstore."""

    def __init__(self, url: str, store: Any) -> None:
        self.url, self.store = url, store

    def get(self, key: str) -> bytes | None:
        import obstore

        try:
            return bytes(obstore.get(self.store, key).bytes())
        except FileNotFoundError:  # obstore's not-found is the builtin
            return None

    def get_buffer(self, key: str) -> memoryview | None:
        import obstore

        try:  # obstore's Bytes own the body as received: viewed, not copied
            return memoryview(obstore.get(self.store, key).bytes())
        except FileNotFoundError:
            return None

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        import obstore

        try:
            got = obstore.get(self.store, key)
        except FileNotFoundError:
            return None
        return bytes(got.bytes()), str(got.meta["e_tag"])

    def put(self, key: str, data: bytes | memoryview) -> None:
        import obstore

        # One PUT, never multipart: "replaced whole" is one request, and it is 2x
        # cheaper on a loopback server than three parts.
        obstore.put(self.store, key, data, use_multipart=False)

    def create(self, key: str, data: bytes) -> str | None:
        import obstore
        from obstore.exceptions import AlreadyExistsError

        try:
            return str(obstore.put(self.store, key, data, mode="create")["e_tag"])
        except AlreadyExistsError:
            return None

    def replace_if(self, key: str, data: bytes, tag: str) -> str | None:
        import obstore
        from obstore.exceptions import PreconditionError

        try:
            return str(obstore.put(self.store, key, data, mode={"e_tag": tag})["e_tag"])
        except (PreconditionError, FileNotFoundError):
            return None

    def zarr_store(self) -> Any:
        from zarr.storage import ObjectStore

        return ObjectStore(self.store, read_only=True)

    def keys(self, prefix: str) -> list[str]:
        import obstore

        found = obstore.list(self.store, prefix=prefix.rstrip("/")).collect()
        return sorted(str(o["path"]) for o in found)


class LocalTarget(Target):
    """A folder (a mounted share): objects are files written to a temporary name,
    fsynced and renamed, so a reader or a crash sees a whole object or the old one."""

    def __init__(self, url: str, root: Path) -> None:
        self.url, self.root = url, root
        self.tmp = root / ".tmp"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        data = self.get(key)
        return None if data is None else (data, _tag(data))

    def put(self, key: str, data: bytes | memoryview) -> None:
        dest = self._path(key)
        dirs = [dest.parent]
        if not dest.parent.is_dir():
            dirs += make_dirs(dest.parent)
        self.tmp.mkdir(exist_ok=True)
        write_atomic(self.tmp, dest, data)
        fsync_dirs(dirs)

    def create(self, key: str, data: bytes) -> str | None:
        with self._locked():
            if self._path(key).exists():
                return None
            self.put(key, data)
        return _tag(data)

    def replace_if(self, key: str, data: bytes, tag: str) -> str | None:
        with self._locked():
            now = self.get(key)
            if now is None or _tag(now) != tag:
                return None
            self.put(key, data)
        return _tag(data)

    def zarr_store(self) -> Any:
        from zarr.storage import LocalStore

        return LocalStore(self.root, read_only=True)

    def keys(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/"))
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and self.tmp not in p.parents
        )

    def _locked(self) -> _Flock:
        return _Flock(self.root / ".lock")


class _Flock:
    """An exclusive flock on a file, for the compare-and-swap of `LocalTarget`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *_: object) -> None:
        os.close(self.fd)  # releases the lock


def _tag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def endpoint() -> str:
    """The on-premises S3 endpoint the standard environment names, if any."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""


def open_target(url: str) -> Target:
    """The target a `[publish] target` URL names; PublishError if it names none."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        root = Path(parsed.path)
        if not root.is_absolute() or parsed.netloc not in ("", "localhost"):
            raise PublishError(url, "a file:// target needs an absolute path: file:///srv/share/ds")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PublishError(url, f"cannot create the folder: {e}") from e
        return LocalTarget(url, root)
    if not parsed.scheme or not parsed.netloc:
        raise PublishError(url, "not a URL: use s3://bucket/prefix, gs://, az:// or file:///path")
    from obstore.exceptions import BaseError
    from obstore.store import from_url

    options: dict[str, Any] = {"timeout": "30s", "connect_timeout": "5s"}
    ep = endpoint()
    kwargs: dict[str, Any] = {"client_options": options}
    if parsed.scheme in ("s3", "s3a") and ep:
        # Passing client options replaces those obstore reads from the environment, so
        # the endpoint and the plain-HTTP rule are given explicitly (which also keeps
        # them in a pickled store; credentials never are).
        kwargs["endpoint"] = ep
        options["allow_http"] = ep.startswith("http://")
    # obstore's own retries give up within about 2 s of a refused connection: the
    # publisher retries outages itself, with backoff, for as long as they last.
    kwargs["retry_config"] = {"max_retries": 2, "retry_timeout": timedelta(seconds=10)}
    try:
        store = from_url(url, **kwargs)
    except (BaseError, ValueError) as e:
        raise PublishError(url, f"cannot open: {e}") from e
    return ObjectTarget(url, store)
