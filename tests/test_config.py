"""config.toml: defaults, the shipped file, and a ConfigError naming the key for every bad value."""

from __future__ import annotations

import math
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from tiffsink.config import Config, ImageSpec, load_config, parse_config
from tiffsink.config.schema import (
    AFTER_INGEST,
    DTYPES,
    FITS,
    INTERPOLATIONS,
    LOG_FORMATS,
    LOG_LEVELS,
    PAGES,
)
from tiffsink.errors import ConfigError

from conftest import ROOT, run_cli, small_sections, write_config

SHIPPED = ROOT / "config.toml"


def test_defaults_load_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """load_config(None) gives every default, paths anchored at the current folder."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None)
    assert cfg.source_file is None
    assert cfg.watch.directory == tmp_path / "inbox"
    assert cfg.dataset.directory == tmp_path / "dataset"
    assert cfg.image == ImageSpec()
    assert cfg.image.row_shape == (512, 512)
    assert cfg.image.dtype == "uint16"
    assert cfg.batch.max_files == 64
    assert cfg.sources.after_ingest == "keep"
    assert cfg.sources.done_directory is None
    assert cfg.metrics.listen == "127.0.0.1:9464"  # the dashboard, on this machine only


def test_shipped_config_equals_the_defaults_except_paths() -> None:
    """The documented config.toml says exactly what the code defaults to."""
    if not SHIPPED.exists():
        pytest.skip(f"{SHIPPED} is not written yet")
    cfg = load_config(SHIPPED)
    base = SHIPPED.resolve().parent
    assert cfg.source_file == SHIPPED.resolve()
    defaults = parse_config({}, base)
    for f in fields(Config):
        if f.name != "source_file":
            assert getattr(cfg, f.name) == getattr(defaults, f.name), f.name
    assert cfg.watch.directory == base / "inbox"
    assert cfg.dataset.directory == base / "dataset"


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    """An empty config file is valid and changes nothing."""
    p = tmp_path / "empty.toml"
    p.write_text("")
    cfg = load_config(p)
    assert replace(cfg, source_file=None) == parse_config({}, tmp_path)


def _choices(values: tuple[Any, ...]) -> list[str]:
    return [repr(v) for v in values]


# (section, key, bad value, fragments the message must contain: the allowed values)
BAD_VALUES: list[tuple[str, str, Any, list[str]]] = [
    ("image", "dtype", "int8", _choices(DTYPES)),
    ("image", "dtype", ["uint8"], _choices(DTYPES)),
    ("image", "channels", 2, ["1", "3"]),
    ("image", "channels", True, ["1", "3"]),
    ("image", "interpolation", "bicubic", _choices(INTERPOLATIONS)),
    ("image", "fit", "zoom", _choices(FITS)),
    ("image", "pages", "some", _choices(PAGES)),
    ("image", "height", 0, [">= 1", "<= 65535"]),
    ("image", "width", 70000, [">= 1", "<= 65535"]),
    ("image", "height", "512", ["integer"]),
    ("image", "width", 512.0, ["integer"]),
    ("image", "height", True, ["integer"]),
    ("image", "max_pixels", 0, [">= 1"]),
    ("image", "max_page_bytes", 0, [">= 1"]),
    ("image", "intensity", [5, 1], ['"full"', '"minmax"', "lo < hi"]),
    ("image", "intensity", [1, 1], ['"full"', '"minmax"', "lo < hi"]),
    ("image", "intensity", [0, 1, 2], ['"full"', '"minmax"', "[lo, hi]"]),
    ("image", "intensity", [0, True], ['"full"', '"minmax"', "[lo, hi]"]),
    ("image", "intensity", "auto", ['"full"', '"minmax"', "[lo, hi]"]),
    ("batch", "max_files", 0, [">= 1", "<= 100000"]),
    ("batch", "max_wait_ms", -1, [">= 0"]),
    ("watch", "directory", "", ["non-empty path"]),
    ("watch", "directory", 5, ["string"]),
    ("watch", "recursive", "yes", ["true or false"]),
    ("watch", "polling", 1, ["true or false"]),
    ("watch", "patterns", "*.tif", ["list of non-empty strings"]),
    ("watch", "patterns", [""], ["list of non-empty strings"]),
    ("watch", "ignore_patterns", [1], ["list of non-empty strings"]),
    ("watch", "poll_interval_ms", 5, [">= 10"]),
    ("watch", "settle_ms", -5, [">= 0"]),
    ("watch", "rescan_interval_s", 1.5, ["integer"]),
    ("dataset", "directory", "", ["non-empty path"]),
    ("workers", "count", -1, [">= 0", "<= 1024"]),
    ("workers", "timeout_s", 0, [">= 5.0", "<= 3600.0"]),
    ("workers", "timeout_s", 1e-9, [">= 5.0", "<= 3600.0"]),
    ("workers", "timeout_s", "30", [">= 5.0"]),
    ("workers", "timeout_s", math.nan, [">= 5.0"]),
    ("watch", "poll_interval_ms", 2**63 - 1, ["<= 600000"]),
    ("workers", "slots_per_worker", 0, [">= 1", "<= 1024"]),
    ("sources", "after_ingest", "archive", _choices(AFTER_INGEST)),
    ("sources", "done_directory", 3, ["string"]),
    ("log", "format", "xml", _choices(LOG_FORMATS)),
    ("log", "level", "verbose", _choices(LOG_LEVELS)),
    ("metrics", "listen", "9464", ["HOST:PORT"]),
    ("metrics", "listen", "localhost:99999", ["HOST:PORT"]),
    ("metrics", "listen", ":9464", ["HOST:PORT"]),
]


@pytest.mark.parametrize(
    ("section", "key", "value", "allowed"),
    BAD_VALUES,
    ids=[f"{s}.{k}={v!r}" for s, k, v, _ in BAD_VALUES],
)
def test_bad_value_is_an_error_naming_the_key_and_what_is_allowed(
    tmp_path: Path, section: str, key: str, value: Any, allowed: list[str]
) -> None:
    """Every out-of-range value raises ConfigError with `section.key` and the allowed values."""
    with pytest.raises(ConfigError) as ei:
        parse_config({section: {key: value}}, tmp_path)
    msg = str(ei.value)
    assert ei.value.key == f"{section}.{key}"
    assert f"{section}.{key}" in msg
    for fragment in allowed:
        assert fragment in msg, f"{fragment!r} missing from {msg!r}"


def test_error_from_a_file_names_the_file(tmp_path: Path) -> None:
    """A bad value read from disk names the config file as well as the key."""
    p = write_config(tmp_path / "scope1.toml", {"image": {"dtype": "int8"}})
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(p.resolve()) in str(ei.value)
    assert "image.dtype" in str(ei.value)


def test_unknown_key_is_an_error_naming_it_and_the_allowed_keys(tmp_path: Path) -> None:
    """A typo'd key is refused, not ignored."""
    with pytest.raises(ConfigError) as ei:
        parse_config({"image": {"colour": 3}}, tmp_path)
    msg = str(ei.value)
    assert "image.colour" in msg
    assert "unknown key" in msg
    for k in ("height", "width", "channels", "dtype"):
        assert k in msg


def test_unknown_section_is_an_error_naming_it(tmp_path: Path) -> None:
    """A section that does not exist is refused with the list of real ones."""
    with pytest.raises(ConfigError) as ei:
        parse_config({"imgae": {"height": 3}}, tmp_path)
    msg = str(ei.value)
    assert "imgae" in msg
    assert "unknown section" in msg
    for s in ("watch", "batch", "image", "dataset", "workers", "sources", "log", "metrics"):
        assert s in msg


def test_a_key_outside_any_section_is_an_error(tmp_path: Path) -> None:
    """A top-level key (not a [section]) is refused naming it."""
    p = tmp_path / "c.toml"
    p.write_text('directory = "inbox"\n')
    with pytest.raises(ConfigError, match="directory"):
        load_config(p)


def test_a_section_that_is_not_a_table_is_an_error(tmp_path: Path) -> None:
    """`image = 5` instead of `[image]` names the section."""
    with pytest.raises(ConfigError, match="image"):
        parse_config({"image": 5}, tmp_path)


def test_missing_file_and_invalid_toml_are_config_errors(tmp_path: Path) -> None:
    """Neither a missing file nor broken TOML escapes as a raw exception."""
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[image\nheight = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_relative_paths_resolve_against_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative paths, given or defaulted, are anchored at the config's folder, not the cwd."""
    etc = tmp_path / "etc" / "tiffsink"
    etc.mkdir(parents=True)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    p = write_config(
        etc / "scope1.toml",
        {
            "dataset": {"directory": "../data/ds"},
            "sources": {"after_ingest": "move", "done_directory": "done"},
        },
    )
    cfg = load_config(p)
    assert cfg.dataset.directory == etc / "../data/ds"
    assert cfg.dataset.directory.resolve() == tmp_path / "etc" / "data" / "ds"
    assert cfg.sources.done_directory == etc / "done"
    assert cfg.watch.directory == etc / "inbox"  # a default, anchored the same way
    assert cfg.source_file == p.resolve()


def test_absolute_and_home_paths_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An absolute path is used as is; `~` expands to the home folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = parse_config(
        {"watch": {"directory": "/srv/inbox"}, "dataset": {"directory": "~/ds"}},
        tmp_path / "etc",
    )
    assert cfg.watch.directory == Path("/srv/inbox")
    assert cfg.dataset.directory == tmp_path / "home" / "ds"


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("full", "full"), ("minmax", "minmax"), ([0, 4095], (0.0, 4095.0)), ([0.5, 1], (0.5, 1.0))],
)
def test_intensity_accepts_full_minmax_and_a_window(
    tmp_path: Path, value: Any, parsed: str | tuple[float, float]
) -> None:
    """intensity is "full", "minmax" or [lo, hi] with lo < hi."""
    cfg = parse_config({"image": {"intensity": value}}, tmp_path)
    assert cfg.image.intensity == parsed


def test_intensity_window_is_part_of_the_stored_identity(tmp_path: Path) -> None:
    """A window is stored as a JSON-friendly list in the spec identity."""
    cfg = parse_config({"image": {"intensity": [0, 4095]}}, tmp_path)
    assert cfg.image.identity()["intensity"] == [0.0, 4095.0]
    assert "max_pixels" not in cfg.image.identity()


@pytest.mark.parametrize("done", [None, ""])
def test_move_without_done_directory_is_an_error_naming_it(tmp_path: Path, done: Any) -> None:
    """after_ingest = "move" needs sources.done_directory."""
    sources: dict[str, Any] = {"after_ingest": "move"}
    if done is not None:
        sources["done_directory"] = done
    with pytest.raises(ConfigError) as ei:
        parse_config({"sources": sources}, tmp_path)
    assert ei.value.key == "sources.done_directory"
    assert "sources.done_directory" in str(ei.value)


def test_move_with_done_directory_is_fine(tmp_path: Path) -> None:
    """The same setting with a done folder parses."""
    cfg = parse_config(
        {"sources": {"after_ingest": "move", "done_directory": "/srv/done"}}, tmp_path
    )
    assert cfg.sources.after_ingest == "move"
    assert cfg.sources.done_directory == Path("/srv/done")


def test_valid_values_of_every_choice_are_accepted(tmp_path: Path) -> None:
    """Each documented choice parses (the allowed lists are not just printed)."""
    for dtype in DTYPES:
        assert parse_config({"image": {"dtype": dtype}}, tmp_path).image.dtype == dtype
    for c in (1, 3):
        assert parse_config({"image": {"channels": c}}, tmp_path).image.channels == c
    for interp in INTERPOLATIONS:
        parse_config({"image": {"interpolation": interp}}, tmp_path)
    for fit in FITS:
        parse_config({"image": {"fit": fit}}, tmp_path)
    for level in LOG_LEVELS:
        parse_config({"log": {"level": level}}, tmp_path)
    cfg = parse_config({"metrics": {"listen": "127.0.0.1:9464"}, "workers": {"count": 0}}, tmp_path)
    assert cfg.metrics.listen == "127.0.0.1:9464"
    assert cfg.workers.resolved_count() >= 1


@pytest.mark.parametrize(
    "pattern",
    [r"(?P<k>a)\1", r"(?P<k>a)(?P=k)", r"(?=x)(?P<k>\d+)", r"(?P<k>\d+)(?<!0)"],
    ids=["backreference", "named-backreference", "lookahead", "lookbehind"],
)
def test_a_path_pattern_re2_cannot_run_in_linear_time_names_the_key(
    tmp_path: Path, pattern: str
) -> None:
    """Backreferences and lookaround (exponential in `re`) are refused at load."""
    with pytest.raises(ConfigError) as ei:
        parse_config({"metadata": {"path_pattern": pattern}}, tmp_path)
    assert ei.value.key == "metadata.path_pattern"
    assert "RE2" in str(ei.value)


def test_a_path_pattern_error_is_one_line_with_exit_2(tmp_path: Path) -> None:
    """`tiffsink run` with an unsupported pattern: exit 2, one stderr line naming the key."""
    sections = small_sections(tmp_path, metadata={"path_pattern": r"(?P<k>a)\1"})
    r = run_cli("run", "--config", str(write_config(tmp_path / "c.toml", sections)), timeout=60)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "metadata.path_pattern" in r.stderr
