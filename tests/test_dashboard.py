"""The dashboard at the metrics address: the page, rows as PNG, /status, bad requests,
and a real headless Chromium loading the page."""

from __future__ import annotations

import json
import shutil
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from tiffsink import open_dataset
from tiffsink.dataset import display

import daemon_harness
from conftest import run_cli, wait_for
from daemon_harness import DaemonProc, source_array, tiff_bytes

N = 20  # good files


def fetch(addr: str, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://{addr}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def running(tmp: Path, fmt: str) -> tuple[DaemonProc, str]:
    d = DaemonProc(
        tmp,
        metrics={"listen": "127.0.0.1:0"},
        dataset={"format": fmt},
        image={"height": 64, "width": 80},
    )
    d.start()
    for i in range(N):
        (d.inbox / f"f{i:02d}.tif").write_bytes(tiff_bytes(source_array(i, (70, 90))))
    (d.inbox / "broken.tif").write_bytes(b"II*\x00garbage")
    d.wait_rows(N)
    wait_for(lambda: d.failures(), 30, "the failure")
    ev = wait_for(lambda: d.events("metrics.listening"), 30, "metrics.listening")
    return d, str(ev[0]["address"])


@pytest.fixture(scope="module", params=["npy", "zarr"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DaemonProc, str]]:
    d, addr = running(tmp_path_factory.mktemp(f"dash-{request.param}"), request.param)
    daemon_harness.LIVE.remove(d)  # shared by this module's tests: stopped below, not reaped
    try:
        yield d, addr
    finally:
        d.stop()


def decode_png(body: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None
    return img


def test_the_page_is_self_contained_html(served: tuple[DaemonProc, str]) -> None:
    """GET / is one HTML page that loads nothing from another host."""
    _, addr = served
    code, headers, body = fetch(addr, "/")
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert 'id="rows"' in page and "/status" in page
    assert "http://" not in page and "https://" not in page and "//cdn" not in page


def test_status_has_what_the_page_shows(served: tuple[DaemonProc, str]) -> None:
    """/status: rows, the 16 newest rows newest first, failures, disk, the rate history."""
    d, addr = served
    code, _, body = fetch(addr, "/status")
    st = json.loads(body)
    assert code == 200 and st["rows"] == N
    assert [r["row"] for r in st["recent"]] == list(range(N - 1, N - 17, -1))
    with open_dataset(d.dataset) as ds:
        assert st["recent"][0]["source"] == Path(ds.record(N - 1).source).name
    assert st["recent_failures"][0]["file"].endswith("broken.tif")
    assert st["recent_failures"][0]["reason"] and st["failed"]
    assert 0 < st["disk"]["free"] <= st["disk"]["total"]
    assert sum(n for _, n in st["rows_per_minute"]) == N


def test_status_names_the_dataset_host_and_uptime(served: tuple[DaemonProc, str]) -> None:
    """/status says which dataset and machine the page belongs to, and since when."""
    d, addr = served
    st = json.loads(fetch(addr, "/status")[2])
    assert st["dataset"] == str(d.dataset) and st["host"] == socket.gethostname()
    assert 0 < st["uptime_s"] < 600


def test_history_comes_from_the_index_across_restarts_and_retry(tmp_path: Path) -> None:
    """After a restart the failures and rows per minute are still on /status (they come
    from the index); after `tiffsink retry` the cleared failures are gone from it."""
    d, _ = running(tmp_path, "npy")
    want = {reason: 1 for reason in d.failures().values()}
    assert d.stop() == 0
    d.start()
    addr = str(wait_for(lambda: d.events("metrics.listening"), 30, "listening")[0]["address"])
    st = json.loads(fetch(addr, "/status")[2])
    assert st["failed"] == want and st["recent_failures"][0]["file"].endswith("broken.tif")
    assert sum(n for _, n in st["rows_per_minute"]) == N
    r = run_cli("retry", str(d.dataset))
    assert r.returncode == 0, r.stderr
    st = json.loads(fetch(addr, "/status")[2])
    assert st["failed"] == {} and st["recent_failures"] == []
    assert d.stop() == 0


def test_a_row_png_is_the_row_windowed_and_cached_forever(served: tuple[DaemonProc, str]) -> None:
    """/rows/3.png is row 3 through preview's 8-bit window; it may be cached for good."""
    d, addr = served
    code, headers, body = fetch(addr, "/rows/3.png")
    assert code == 200 and headers["Content-Type"] == "image/png"
    assert "immutable" in headers["Cache-Control"]
    with open_dataset(d.dataset) as ds:
        want = display.to_u8(ds.take([3])[0])
    np.testing.assert_array_equal(decode_png(body), want)


def test_latest_png_is_the_newest_row_and_not_cached(served: tuple[DaemonProc, str]) -> None:
    d, addr = served
    code, headers, body = fetch(addr, "/latest.png")
    assert code == 200 and headers["Cache-Control"] == "no-store"
    with open_dataset(d.dataset) as ds:
        want = display.to_u8(ds.take([len(ds) - 1])[0])
    np.testing.assert_array_equal(decode_png(body), want)


def test_a_thumbnail_is_shrunk_to_the_asked_width(served: tuple[DaemonProc, str]) -> None:
    _, addr = served
    code, _, body = fetch(addr, "/rows/0.png?w=40")
    assert code == 200 and decode_png(body).shape == (32, 40)


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("/rows/999999.png", 404),
        ("/rows/-1.png", 404),
        ("/rows/abc.png", 404),
        ("/rows/1.png/../../../etc/passwd", 404),
        ("/rows/%2e%2e%2fetc%2fpasswd.png", 404),
        ("/rows/0.png?w=5", 400),
        ("/rows/0.png?w=abc", 400),
        ("/rows/0.png?path=/etc/passwd", 400),
        ("/nope", 404),
    ],
)
def test_bad_requests_get_a_4xx(served: tuple[DaemonProc, str], path: str, want: int) -> None:
    """Only row numbers are accepted; anything else is a 4xx, never a traceback."""
    _, addr = served
    code, _, body = fetch(addr, path)
    assert code == want
    assert b"Traceback" not in body


def test_writes_are_refused_with_405(served: tuple[DaemonProc, str]) -> None:
    _, addr = served
    for method in ("POST", "PUT", "DELETE"):
        code, headers, _ = fetch(addr, "/status", method)
        assert code == 405 and headers["Allow"] == "GET"


def test_a_malformed_request_line_gets_400(served: tuple[DaemonProc, str]) -> None:
    _, addr = served
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1 junk\r\n\r\n")
        reply = s.recv(200)
    assert reply.startswith(b"HTTP/1.") and b" 400 " in reply


def test_the_daemon_is_still_healthy_after_all_that(served: tuple[DaemonProc, str]) -> None:
    d, addr = served
    assert fetch(addr, "/healthz")[0] == 200
    assert d.proc is not None and d.proc.poll() is None


# -- a real browser -------------------------------------------------------------------------


def _browser() -> tuple[str, str]:
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        pytest.skip("no chromium + chromedriver (Debian: apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="selenium is installed by the README's set-up")
    return chrome, driver


def test_chromium_renders_the_page_thumbnails_and_row_count(tmp_path: Path) -> None:
    """Headless Chromium loads the page: the row count matches the dataset, all 16
    thumbnails decode (naturalWidth > 0); a screenshot is saved in the test's tmp dir."""
    chrome, driver = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    d, addr = running(tmp_path, "zarr")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1200,1400",
    ):
        opts.add_argument(a)
    browser = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        browser.get(f"http://{addr}/")
        shown = wait_for(
            lambda: browser.execute_script(
                "const imgs = [...document.querySelectorAll('#thumbs img')];"
                "return imgs.length === 16 && imgs.every(i => i.complete && i.naturalWidth > 0)"
                " ? document.getElementById('rows').textContent : null;"
            ),
            30,
            "16 rendered thumbnails",
        )
        assert shown.replace(",", "") == str(N)
        first = browser.execute_script("return document.querySelector('#thumbs img').src")
        assert first.endswith(f"/rows/{N - 1}.png?w=256")  # newest first
        assert "broken.tif" in browser.find_element("id", "failures").text
        where = browser.find_element("id", "where").text
        assert str(d.dataset) in where and socket.gethostname() in where and ", up " in where
        labels = browser.execute_script(
            "return [...document.querySelectorAll('#chart text')].map(t => t.textContent)"
        )
        assert {"time", "rows per minute", "now", "-60 min", "0"} <= set(labels)
        browser.save_screenshot(str(tmp_path / "dashboard.png"))
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    finally:
        browser.quit()
        d.stop()


def test_a_port_already_taken_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    """Two instances on one port: the second exits 2, naming metrics.listen."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        d = DaemonProc(tmp_path, metrics={"listen": f"127.0.0.1:{port}"})
        d.start(wait_ready=False)
        assert d.wait(60) == 2
    log = d.log_path.read_text()
    assert f"metrics.listen: cannot listen on 127.0.0.1:{port}" in log
