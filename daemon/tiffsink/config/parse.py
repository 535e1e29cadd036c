"""Parse `config.toml` once into frozen dataclasses that the rest of tiffsink is handed.

Every key has a default (the shipped `config.toml` documents the same values), unknown
keys and bad values raise ConfigError naming the key and what is allowed, and relative
paths resolve against the folder of the config file, so a unit file can point at
`/etc/tiffsink/scope1.toml` and the dataset lands where that file says.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .pattern import PatternError, compile_path_pattern
from .resources import fit_resources
from .schema import (
    AFTER_INGEST,
    BOUNDS,
    COMPRESSIONS,
    DTYPES,
    FITS,
    FORMATS,
    INTERPOLATIONS,
    LOG_FORMATS,
    LOG_LEVELS,
    ON_MISMATCH,
    PAGES,
    SECTIONS,
    Config,
    SourcesConfig,
)


class _Parser:
    """Checks one section's raw TOML values; each check names the key on failure."""

    def __init__(self, path: Path | None, section: str, raw: dict[str, Any], base: Path) -> None:
        self.path, self.section, self.raw, self.base = path, section, raw, base

    def err(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.path, f"{self.section}.{key}", reason)

    def integer(self, key: str) -> int:
        """An integer within BOUNDS[section.key]."""
        lo, hi = BOUNDS[f"{self.section}.{key}"]
        v = self.raw[key]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.err(key, f"must be an integer >= {lo} and <= {hi}, got {v!r}")
        return v

    def number(self, key: str) -> float:
        """A finite number within BOUNDS[section.key]."""
        lo, hi = BOUNDS[f"{self.section}.{key}"]
        v = self.raw[key]
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or not lo <= v <= hi:
            raise self.err(key, f"must be a number >= {lo} and <= {hi}, got {v!r}")
        return float(v)

    def boolean(self, key: str) -> bool:
        v = self.raw[key]
        if not isinstance(v, bool):
            raise self.err(key, f"must be true or false, got {v!r}")
        return v

    def choice(self, key: str, allowed: tuple[Any, ...]) -> Any:
        v = self.raw[key]
        if v not in allowed or isinstance(v, bool):
            shown = ", ".join(repr(a) for a in allowed)
            raise self.err(key, f"must be one of {shown}, got {v!r}")
        return v

    def string(self, key: str) -> str:
        v = self.raw[key]
        if not isinstance(v, str):
            raise self.err(key, f"must be a string, got {v!r}")
        return v

    def strings(self, key: str) -> tuple[str, ...]:
        v = self.raw[key]
        if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
            raise self.err(key, f"must be a list of non-empty strings, got {v!r}")
        return tuple(v)

    def dirpath(self, key: str, optional: bool = False) -> Path | None:
        v = self.string(key)
        if not v:
            if optional:
                return None
            raise self.err(key, "must be a non-empty path")
        p = Path(v).expanduser()
        return p if p.is_absolute() else (self.base / p)


def _intensity(p: _Parser) -> str | tuple[float, float]:
    v = p.raw["intensity"]
    if v in ("full", "minmax"):
        return str(v)
    ok = (
        isinstance(v, list)
        and len(v) == 2
        and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in v
        )
        and v[0] < v[1]
    )
    if not ok:
        raise p.err("intensity", f'must be "full", "minmax" or [lo, hi] with lo < hi, got {v!r}')
    return (float(v[0]), float(v[1]))


def _parse_section(p: _Parser, cls: type) -> Any:
    known = {f.name for f in fields(cls)}
    for key in p.raw:
        if key not in known:
            raise p.err(key, f"unknown key; allowed keys: {', '.join(sorted(known))}")
    s = p.section
    vals: dict[str, Any] = {}
    table: dict[str, dict[str, Any]] = {
        "watch": {
            "directory": lambda: p.dirpath("directory"),
            "recursive": lambda: p.boolean("recursive"),
            "patterns": lambda: p.strings("patterns"),
            "ignore_patterns": lambda: p.strings("ignore_patterns"),
            "polling": lambda: p.boolean("polling"),
            "poll_interval_ms": lambda: p.integer("poll_interval_ms"),
            "settle_ms": lambda: p.integer("settle_ms"),
            "rescan_interval_s": lambda: p.integer("rescan_interval_s"),
        },
        "batch": {
            "max_files": lambda: p.integer("max_files"),
            "max_wait_ms": lambda: p.integer("max_wait_ms"),
        },
        "image": {
            "height": lambda: p.integer("height"),
            "width": lambda: p.integer("width"),
            "channels": lambda: p.choice("channels", (1, 3)),
            "dtype": lambda: p.choice("dtype", DTYPES),
            "interpolation": lambda: p.choice("interpolation", INTERPOLATIONS),
            "fit": lambda: p.choice("fit", FITS),
            "pages": lambda: p.choice("pages", PAGES),
            "intensity": lambda: _intensity(p),
            "max_pixels": lambda: p.integer("max_pixels"),
            "max_page_bytes": lambda: p.integer("max_page_bytes"),
        },
        "dataset": {
            "directory": lambda: p.dirpath("directory"),
            "format": lambda: p.choice("format", FORMATS),
            "shard_rows": lambda: p.integer("shard_rows"),
            "compression": lambda: p.choice("compression", COMPRESSIONS),
            "compression_level": lambda: p.integer("compression_level"),
        },
        "workers": {
            "count": lambda: p.integer("count"),
            "timeout_s": lambda: p.number("timeout_s"),
            "slots_per_worker": lambda: p.integer("slots_per_worker"),
        },
        "sources": {
            "after_ingest": lambda: p.choice("after_ingest", AFTER_INGEST),
            "done_directory": lambda: p.dirpath("done_directory", optional=True),
            "failed_directory": lambda: p.dirpath("failed_directory", optional=True),
        },
        "log": {
            "format": lambda: p.choice("format", LOG_FORMATS),
            "level": lambda: p.choice("level", LOG_LEVELS),
        },
        "metrics": {"listen": lambda: _listen(p)},
        "cluster": {"scheduler": lambda: _scheduler(p)},
        "metadata": {
            "path_pattern": lambda: _pattern(p),
            "on_mismatch": lambda: p.choice("on_mismatch", ON_MISMATCH),
            "label": lambda: p.string("label"),
        },
        "publish": {
            "target": lambda: _target(p),
            "tail_interval_ms": lambda: p.integer("tail_interval_ms"),
            "lease_s": lambda: p.integer("lease_s"),
            "max_lag_s": lambda: p.integer("max_lag_s"),
        },
    }
    getters = table[s]
    for key in p.raw:
        vals[key] = getters[key]()
    return cls(**vals)


def _pattern(p: _Parser) -> str:
    v = p.string("path_pattern")
    try:
        rx = compile_path_pattern(v)
    except PatternError as e:
        raise p.err("path_pattern", f"not a valid regular expression: {e}") from None
    if v and not rx.groupindex:
        raise p.err(
            "path_pattern",
            "needs named groups, e.g. (?P<well>[A-P]\\d{2}); each becomes a metadata key",
        )
    return v


def _target(p: _Parser) -> str:
    v = p.string("target")
    if v and ("://" not in v or (v.startswith("file://") and not v.startswith("file:///"))):
        raise p.err("target", "a URL: s3://bucket/prefix, gs://, az:// or file:///path")
    return v


def _scheduler(p: _Parser) -> str:
    v = p.string("scheduler")
    if v not in ("", "local") and "://" not in v:
        raise p.err(
            "scheduler",
            f'must be "" (this machine\'s pipeline), "local" (a Dask LocalCluster) or a '
            f'scheduler address such as "tcp://10.0.0.5:8786", got {v!r}',
        )
    return v


def _listen(p: _Parser) -> str:
    v = p.string("listen")
    if v:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise p.err(
                "listen",
                f'must be "" (off) or "HOST:PORT" (port 0 = any free port), '
                f'e.g. "127.0.0.1:9464", got {v!r}',
            )
    return v


def parse_config(raw: dict[str, Any], base: Path, path: Path | None = None) -> Config:
    """Build a Config from already-parsed TOML; `base` anchors relative paths."""
    for section in raw:
        if section not in SECTIONS:
            raise ConfigError(
                path, section, f"unknown section; allowed: {', '.join(sorted(SECTIONS))}"
            )
        if not isinstance(raw[section], dict):
            raise ConfigError(path, section, "must be a table ([section])")
    parts: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        parts[name] = _parse_section(_Parser(path, name, raw.get(name, {}), base), cls)
    # Relative defaults resolve against the config's folder too.
    watch = parts["watch"]
    if not watch.directory.is_absolute():
        parts["watch"] = replace(watch, directory=base / watch.directory)
    ds = parts["dataset"]
    if not ds.directory.is_absolute():
        parts["dataset"] = replace(ds, directory=base / ds.directory)
    src: SourcesConfig = parts["sources"]
    if src.after_ingest == "move" and src.done_directory is None:
        raise ConfigError(path, "sources.done_directory", 'must be set when after_ingest = "move"')
    return fit_resources(Config(**parts, source_file=path))


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read a config file; None gives the defaults anchored at the current folder."""
    if path is None:
        return parse_config({}, Path.cwd())
    p = Path(path).expanduser().resolve()
    try:
        with p.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(p, "", "config file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(p, "", f"not valid TOML: {e}") from None
    return parse_config(raw, p.parent, p)
