"""What an operator sees: logs, metrics and health, and the status/failures/retry/preview
commands, against a real daemon process; plus the CLI's refusals (bad config, lock)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest
from prometheus_client.parser import text_string_to_metric_families

import tiffsink
from tiffsink.config import ImageSpec
from tiffsink.dataset.layout import IMAGES
from tiffsink.dataset.writer import DatasetWriter
from tiffsink.service.health import Health
from tiffsink.service.http import StatusServer
from tiffsink.testing import faults

import daemon_harness
from conftest import run_cli, wait_for, write_config
from daemon_harness import DaemonProc, source_array, tiff_bytes

METRICS = {"listen": "127.0.0.1:0"}
GOOD = 4  # good files in the shared daemon's inbox
OLD_NS = int((time.time() - 3600) * 1e9)  # an mtime long past settle_ms


# -- helpers -----------------------------------------------------------------------------
def put(path: Path, data: bytes, mtime_ns: int = OLD_NS) -> Path:
    """Place a file atomically (write elsewhere, set mtime, rename in), as rsync does."""
    tmp = path.parent.parent / f".staging-{path.name}"
    tmp.write_bytes(data)
    os.utime(tmp, ns=(mtime_ns, mtime_ns))
    os.replace(tmp, path)
    return path


def truncated_like(good: bytes) -> bytes:
    """A TIFF of a bigger image cut to `good`'s length: reason "truncated", same size."""
    bad = tiff_bytes(source_array(99, (128, 96)))[: len(good)]
    assert len(bad) == len(good)
    return bad


def address(d: DaemonProc) -> str:
    """The bound HOST:PORT, as the daemon logged it in `metrics.listening`."""
    ev = wait_for(lambda: d.events("metrics.listening"), 30, "metrics.listening")
    return str(ev[0]["address"])


def get(d: DaemonProc, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{address(d)}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(d: DaemonProc) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, keyed by (name, labels)."""
    code, text = get(d, "/metrics")
    assert code == 200
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def metric(d: DaemonProc, name: str, **labels: str) -> float | None:
    return samples(d).get((name, frozenset(labels.items())))


def status_json(dataset: Path) -> dict[str, Any]:
    r = run_cli("status", str(dataset), "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., DaemonProc]]:
    """Make DaemonProcs under tmp_path; any still running at the end are killed."""
    made: list[DaemonProc] = []

    def make(env: dict[str, str] | None = None, **sections: dict[str, Any]) -> DaemonProc:
        d = DaemonProc(tmp_path / f"d{len(made)}", env=env, **sections)
        made.append(d)
        return d

    yield make
    for d in made:
        if d.proc is not None and d.proc.poll() is None:
            d.kill_group()


class Shared:
    """One daemon (metrics on, log format "auto") that ingested GOOD files and one bad."""

    def __init__(self, d: DaemonProc) -> None:
        self.d = d
        self.good = [d.inbox / f"g{i}.tif" for i in range(GOOD)]
        self.bad = d.inbox / "broken.tif"

    @property
    def pid(self) -> int:
        assert self.d.proc is not None
        return self.d.proc.pid


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    tmp = tmp_path_factory.mktemp("shared")
    d = DaemonProc(tmp, metrics=METRICS, log={"format": "auto", "level": "debug"})
    # Lives for the module: keep it from the per-test reaper; stopped (or killed) below.
    live = getattr(daemon_harness, "LIVE", [])
    if d in live:
        live.remove(d)
    s = Shared(d)
    d.start()
    try:
        for i, p in enumerate(s.good):
            p.write_bytes(tiff_bytes(source_array(40 + i)))
        s.bad.write_bytes(tiff_bytes(source_array(50))[:300])
        d.wait_rows(GOOD)
        wait_for(lambda: d.failures().get(str(s.bad)), 30, "the failure record")
        yield s
        assert d.stop() == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.kill_group()


# -- logs --------------------------------------------------------------------------------
def test_log_is_json_lines_when_not_a_tty(shared: Shared) -> None:
    """With format "auto" and stdout not a TTY, every line the daemon writes is JSON."""
    lines = [ln for ln in shared.d.log_path.read_text().splitlines() if ln.strip()]
    assert lines
    for ln in lines:
        ev = json.loads(ln)
        assert isinstance(ev, dict) and {"event", "level", "timestamp"} <= ev.keys(), ln


def test_log_file_ingested_names_the_path(shared: Shared) -> None:
    """At debug, each ingested file gives one `file.ingested` event with path and pages."""
    evs = wait_for(lambda: shared.d.events("file.ingested"), 30, "file.ingested")
    by_path = {e["path"]: e for e in evs}
    assert sorted(by_path) == sorted(str(p) for p in shared.good)
    assert all(e["pages"] == 1 and e["latency_ms"] >= 0 for e in evs)


def test_log_batch_committed_has_rows_and_ms(shared: Shared) -> None:
    """`batch.committed` events carry rows and ms; their rows add up to the dataset's."""

    def rows_logged() -> bool:
        return sum(e["rows"] for e in shared.d.events("batch.committed")) == GOOD

    wait_for(rows_logged, 30, f"batch.committed events adding up to {GOOD} rows")
    for e in shared.d.events("batch.committed"):
        assert isinstance(e["rows"], int) and isinstance(e["ms"], int | float) and e["ms"] >= 0


def test_log_broken_file_gives_file_failed(shared: Shared) -> None:
    """A broken file gives `file.failed` with its path, a reason and a detail."""
    (ev,) = wait_for(lambda: shared.d.events("file.failed"), 30, "file.failed")
    assert ev["path"] == str(shared.bad)
    assert ev["reason"] == "truncated"
    assert ev["detail"] and ev["level"] == "warning"


def test_log_console_format_is_readable_not_json(daemons: Callable[..., DaemonProc]) -> None:
    """`format = "console"` writes readable key=value lines, not JSON."""
    d = daemons(log={"format": "console"})
    d.start(wait_ready=False)
    wait_for(lambda: "daemon.ready" in d.log_path.read_text(), 60, "daemon.ready")
    p = d.inbox / "c.tif"
    p.write_bytes(tiff_bytes(source_array(1)))
    d.wait_rows(1)
    wait_for(lambda: "batch.committed" in d.log_path.read_text(), 30, "batch.committed")
    assert d.stop() == 0
    lines = [ln for ln in d.log_path.read_text().splitlines() if ln.strip()]
    assert d.events() == [], "console lines must not be JSON"
    (committed,) = [ln for ln in lines if "batch.committed" in ln]
    assert "[info" in committed and "rows=1" in committed


def test_log_info_has_a_line_per_batch_not_per_file(daemons: Callable[..., DaemonProc]) -> None:
    """At info, a batch of files gives one `batch.committed` line and no per-file lines
    (journald drops a fast ingest's lines past its rate limit); failures are still logged."""
    d = daemons()
    for i in range(5):
        put(d.inbox / f"ok{i}.tif", tiff_bytes(source_array(i)))
    put(d.inbox / "bad.tif", b"this is not a TIFF file" * 4)
    d.start(wait_ready=False)
    d.wait_rows(5)
    wait_for(lambda: d.events("file.failed"), 30, "file.failed")
    assert d.stop() == 0
    assert d.events("file.ingested") == [] and d.events("file.decoded") == []
    assert sum(e["rows"] for e in d.events("batch.committed")) == 5


def test_log_debug_has_a_line_per_file(daemons: Callable[..., DaemonProc]) -> None:
    """At debug, each decoded file gets its own `file.decoded` line, naming it."""
    d = daemons(log={"level": "debug"})
    for i in range(3):
        put(d.inbox / f"ok{i}.tif", tiff_bytes(source_array(i)))
    d.start(wait_ready=False)
    d.wait_rows(3)
    assert d.stop() == 0
    named = sorted(os.path.basename(e["path"]) for e in d.events("file.decoded"))
    assert named == ["ok0.tif", "ok1.tif", "ok2.tif"]


def test_log_level_warning_suppresses_info(daemons: Callable[..., DaemonProc]) -> None:
    """`level = "warning"` keeps file.failed but drops info events such as batch.committed."""
    d = daemons(log={"level": "warning"})
    put(d.inbox / "ok.tif", tiff_bytes(source_array(2)))
    put(d.inbox / "bad.tif", b"this is not a TIFF file" * 4)
    d.start(wait_ready=False)
    d.wait_rows(1)
    wait_for(lambda: d.events("file.failed"), 30, "file.failed")
    assert d.stop() == 0
    levels = {e["level"] for e in d.events()}
    assert levels <= {"warning", "error"}, levels
    names = {e["event"] for e in d.events()}
    assert not names & {"daemon.ready", "file.ingested", "batch.committed", "scan.done"}


# -- metrics and health ------------------------------------------------------------------
def test_metrics_images_ingested_equals_rows(shared: Shared) -> None:
    """tiffsink_images_ingested_total and tiffsink_dataset_rows equal the committed rows."""
    wait_for(lambda: metric(shared.d, "tiffsink_images_ingested_total") == GOOD, 30, "counter")
    assert metric(shared.d, "tiffsink_dataset_rows") == GOOD


def test_metrics_files_failed_by_reason(shared: Shared) -> None:
    """tiffsink_files_failed_total is labelled with the failure reason."""
    wait_for(
        lambda: metric(shared.d, "tiffsink_files_failed_total", reason="truncated") == 1,
        30,
        'tiffsink_files_failed_total{reason="truncated"} == 1',
    )


def test_metrics_latency_histograms(shared: Shared) -> None:
    """Batch duration and arrival-to-commit are histograms; one latency per file ingested."""
    inf = "+Inf"
    wait_for(
        lambda: metric(shared.d, "tiffsink_arrival_to_commit_seconds_bucket", le=inf) == GOOD,
        30,
        "one arrival-to-commit observation per file",
    )
    s = samples(shared.d)
    batches = s[("tiffsink_batch_duration_seconds_bucket", frozenset({("le", inf)}))]
    assert batches >= 1
    assert ("tiffsink_arrival_to_commit_seconds_bucket", frozenset({("le", "0.1")})) in s


def test_metrics_gauges_and_build_info(shared: Shared) -> None:
    """Pending, dataset size, last commit time and build info are exported."""
    wait_for(lambda: metric(shared.d, "tiffsink_dataset_rows") == GOOD, 30, "rows gauge")
    s = samples(shared.d)
    none: frozenset[tuple[str, str]] = frozenset()
    assert ("tiffsink_pending_files", none) in s
    assert s[("tiffsink_dataset_bytes", none)] == (shared.d.dataset / IMAGES).stat().st_size
    last = s[("tiffsink_last_commit_timestamp_seconds", none)]
    assert time.time() - 600 < last <= time.time()
    info = s[("tiffsink_build_info", frozenset({("version", tiffsink.__version__)}))]
    assert info == 1


def test_healthz_ok_while_progressing(shared: Shared) -> None:
    """/healthz answers 200 "ok" while the pipeline is idle or committing."""
    assert get(shared.d, "/healthz") == (200, "ok\n")


def test_status_endpoint_json(shared: Shared) -> None:
    """/status is JSON with the committed rows, failures by reason and health."""
    code, body = get(shared.d, "/status")
    assert code == 200
    st = json.loads(body)
    assert st["rows"] == GOOD
    assert st["failed"] == {"truncated": 1}
    assert st["healthy"] is True and st["problem"] is None
    assert st["version"] == tiffsink.__version__


def test_unknown_path_is_404(shared: Shared) -> None:
    """Any other path on the metrics port answers 404."""
    assert get(shared.d, "/nope")[0] == 404


def test_hung_worker_shows_pending_without_false_alarm(
    daemons: Callable[..., DaemonProc],
) -> None:
    """A hung decode shows as a pending file; /healthz stays 200 until the stall threshold.

    The threshold is max(120, 4 * timeout_s) s and not configurable, so the 503 itself is
    checked in-process (test_healthz_503_names_the_problem), not here.
    """
    d = daemons(env=faults.spec(hang="stuck"), workers={"timeout_s": 600}, metrics=METRICS)
    d.start()
    (d.inbox / "stuck.tif").write_bytes(tiff_bytes(source_array(3)))
    # health.pending is refreshed every 5 s by the daemon loop.
    wait_for(lambda: (metric(d, "tiffsink_pending_files") or 0) >= 1, 20, "a pending file")
    st = json.loads(get(d, "/status")[1])
    assert st["rows"] == 0 and st["pending"] >= 1
    assert st["healthy"] is True and st["problem"] is None
    assert get(d, "/healthz") == (200, "ok\n")
    assert metric(d, "tiffsink_last_commit_timestamp_seconds") == 0


def test_healthz_503_names_the_problem() -> None:
    """/healthz answers 503 with the reason: stalled pipeline, then a dead observer."""

    class Busy:
        def disk_full(self) -> bool:
            return False

        def idle(self) -> bool:
            return False

    class Observer:
        def __init__(self) -> None:
            self.up = True

        def alive(self) -> bool:
            return self.up

    h = Health(stall_s=0.0)  # the daemon uses max(120, 4 * timeout_s)
    obs = Observer()
    h.start(obs, Busy(), rows=0)
    server = StatusServer(h, "127.0.0.1:0")
    try:
        url = "http://{}:{}/healthz".format(*server.address)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url, timeout=10)
        assert e.value.code == 503
        assert "committed nothing" in e.value.read().decode()
        obs.up = False
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url, timeout=10)
        assert e.value.code == 503
        assert e.value.read().decode() == "observer thread is not running\n"
    finally:
        server.close()


def test_dataset_bytes_metric_after_restart(daemons: Callable[..., DaemonProc]) -> None:
    """After a restart tiffsink_dataset_bytes is images.npy's size before any new commit."""
    d = daemons(metrics=METRICS)
    d.start()
    for i in range(2):
        (d.inbox / f"r{i}.tif").write_bytes(tiff_bytes(source_array(60 + i)))
    d.wait_rows(2)
    assert d.stop() == 0
    d.start()
    assert metric(d, "tiffsink_dataset_rows") == 2
    size = (d.dataset / IMAGES).stat().st_size
    assert metric(d, "tiffsink_dataset_bytes") == size
    assert json.loads(get(d, "/status")[1])["bytes"] == size


# -- tiffsink status / failures / retry ----------------------------------------------------
def test_status_json_while_running(shared: Shared) -> None:
    """`status --json` gives rows, the daemon's PID, failures by reason and the image spec."""
    st = status_json(shared.d.dataset)
    assert st["rows"] == GOOD and st["files"] == GOOD
    assert st["writer_pid"] == shared.pid
    assert st["failures"] == {"truncated": 1} and st["failures_total"] == 1
    img = st["image"]
    assert (img["height"], img["width"], img["channels"], img["dtype"]) == (32, 48, 1, "uint16")
    assert st["bytes"] == (shared.d.dataset / IMAGES).stat().st_size


def test_status_text_while_running(shared: Shared) -> None:
    """`status` (text) shows rows, the writer's PID, failures by reason and the spec."""
    r = run_cli("status", str(shared.d.dataset), timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"rows:         {GOOD} from {GOOD} files" in out
    assert f"daemon running, PID {shared.pid}" in out
    assert "truncated: 1" in out
    assert "32x48x1 uint16" in out


def test_status_after_stop_has_no_writer(daemons: Callable[..., DaemonProc]) -> None:
    """Once the daemon stopped, writer_pid is null and the text says not running."""
    d = daemons()
    d.start()
    (d.inbox / "a.tif").write_bytes(tiff_bytes(source_array(7)))
    d.wait_rows(1)
    assert d.stop() == 0
    st = status_json(d.dataset)
    assert st["writer_pid"] is None and st["rows"] == 1
    r = run_cli("status", str(d.dataset), timeout=60)
    assert "none (not running)" in r.stdout


def test_failures_lists_reason_and_path(shared: Shared) -> None:
    """`tiffsink failures` prints reason, path and detail of each recorded failure."""
    r = run_cli("failures", str(shared.d.dataset), timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"truncated\t{shared.bad}\t" in r.stdout
    assert r.stdout.rstrip().endswith("1 failure(s)")


def test_retry_by_reason_makes_running_daemon_try_again(
    daemons: Callable[..., DaemonProc],
) -> None:
    """`retry --reason truncated` clears only those; the next rescan ingests the fixed file.

    The fixed file keeps the broken one's size and mtime, so only the retry (not a new
    version of the file) can make the daemon try it again.
    """
    d = daemons(watch={"rescan_interval_s": 1})
    d.start()
    good = tiff_bytes(source_array(8))
    cut = put(d.inbox / "cut.tif", truncated_like(good))
    junk = put(d.inbox / "junk.tif", b"this is not a TIFF file" * 4)
    want = {str(cut): "truncated", str(junk): "not_tiff"}
    wait_for(lambda: d.failures() == want, 30, f"failures {want}")
    put(cut, good)  # fixed, same (size, mtime): still the failed version to the index
    scans = len(d.events("scan.done"))
    wait_for(lambda: len(d.events("scan.done")) >= scans + 2, 30, "two rescans")
    assert d.rows() == {}

    r = run_cli("retry", str(d.dataset), "--reason", "truncated", timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("1 failure record(s) with reason truncated cleared")
    listed = run_cli("failures", str(d.dataset), timeout=60).stdout
    assert str(junk) in listed and str(cut) not in listed

    rows = d.wait_rows(1, timeout=30)
    assert list(rows) == [str(cut)]
    assert d.stop() == 0
    assert d.failures() == {str(junk): "not_tiff"}


def test_retry_on_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    """`retry` on a folder holding no dataset exits 2 with a message and creates nothing."""
    r = run_cli("retry", str(tmp_path), timeout=60)
    assert r.returncode == 2, r.stderr
    assert "not a tiffsink dataset" in r.stderr and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


# -- tiffsink preview ----------------------------------------------------------------------
def test_preview_writes_grid_png(shared: Shared) -> None:
    """`preview --last 4` writes a 2x2 sheet of 256 px tiles plus label rows, none black."""
    out = shared.d.tmp / "sheet.png"
    r = run_cli("preview", str(shared.d.dataset), "--last", "4", "--out", str(out), timeout=60)
    assert r.returncode == 0, r.stderr
    img = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.shape == (2 * (256 + 18), 2 * 256, 3)
    tile_h = round(32 * 256 / 48)  # rows are 32x48: scaled to 256 px wide
    for k in range(4):
        y0, x0 = (k // 2) * (256 + 18), (k % 2) * 256
        tile = img[y0 : y0 + tile_h, x0 : x0 + 256]
        assert tile.max() > 0 and tile.std() > 0, f"tile {k} is blank"
        label = img[y0 + 256 : y0 + 256 + 18, x0 : x0 + 256]
        assert label.max() > 0, f"label {k} is blank"


def test_preview_of_empty_dataset_is_a_clear_error(tmp_path: Path) -> None:
    """On a dataset without rows, preview exits 2 saying there are no committed rows."""
    DatasetWriter(tmp_path / "empty", ImageSpec(height=32, width=48)).close()
    out = tmp_path / "sheet.png"
    r = run_cli("preview", str(tmp_path / "empty"), "--out", str(out), timeout=60)
    assert r.returncode == 2
    assert "no committed rows" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


# -- refusals at the CLI -------------------------------------------------------------------
def test_run_with_bad_dtype_exits_2_naming_key(tmp_path: Path) -> None:
    """`run` with `[image] dtype = "int7"` exits 2, naming image.dtype and allowed values."""
    cfg = write_config(tmp_path / "bad.toml", {"image": {"dtype": "int7"}})
    r = run_cli("run", "--config", str(cfg), timeout=30, cwd=tmp_path)
    assert r.returncode == 2
    assert "image.dtype" in r.stderr and "'int7'" in r.stderr
    assert "'uint8', 'uint16', 'float32'" in r.stderr
    assert "Traceback" not in r.stderr


def test_ingest_into_locked_dataset_names_pid(shared: Shared) -> None:
    """`ingest` into the dataset a running daemon holds exits 2 naming the daemon's PID."""
    src = shared.d.tmp / "backfill"
    src.mkdir(exist_ok=True)
    (src / "x.tif").write_bytes(tiff_bytes(source_array(70)))
    r = run_cli("ingest", str(src), "--config", str(shared.d.config), timeout=60)
    assert r.returncode == 2
    assert f"locked for writing by PID {shared.pid}" in r.stderr
    assert "Traceback" not in r.stderr
