"""The web port cannot hurt ingestion: 2,000 idle connections and slowloris clients
against a real daemon (started with systemd's default soft limit of 1,024 descriptors)
while frames arrive; client aborts; GET only; short 400s; descriptors in health."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import socket
import struct
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tiffsink.service.fds import HTTP_CONNECTIONS, NOFILE, FdWatch, http_connections
from tiffsink.service.health import Health
from tiffsink.service.http import StatusServer
from tiffsink.service.unit import default_unit

from daemon_harness import DaemonProc, source_array, tiff_bytes

IDLE = 2000
SLOW = 100  # slowloris clients at any time, each dribbling its head a byte at a time
FRAMES = 40
FLOOD_S = 12.0  # past the header deadline (10 s), so slowloris clients are cut and return
# Start the daemon as systemd does without LimitNOFILE=: soft limit 1,024.
SOFT_1024 = [
    sys.executable,
    "-c",
    "import os, resource, sys; h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, h)); os.execv(sys.argv[1], sys.argv[1:])",
]


@pytest.fixture
def many_fds() -> None:
    """This process needs a descriptor per client socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE + SLOW + 512
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def healthz(addr: str) -> tuple[int, float]:
    t = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://{addr}/healthz", timeout=5) as r:
            code = r.status
    except OSError as e:  # HTTPError (503), timeout, refused: all count as not answering
        code = getattr(e, "code", 0)
    return code, time.monotonic() - t


class Slowloris(threading.Thread):
    """SLOW connections, each sending one more byte of an endless head every round."""

    HEAD = b"GET /status HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.stop, self.cut = port, threading.Event(), 0
        self.socks: list[tuple[socket.socket, int]] = []

    def _open(self) -> tuple[socket.socket, int]:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", self.port))
        return s, 0

    def run(self) -> None:
        self.socks = [self._open() for _ in range(SLOW)]
        while not self.stop.wait(0.05):
            for i, (s, sent) in enumerate(self.socks):
                try:
                    s.send(self.HEAD[sent : sent + 1])
                    self.socks[i] = (s, sent + 1)
                except BlockingIOError:
                    pass  # still connecting
                except OSError:  # the server closed it (deadline or eviction): reconnect
                    s.close()
                    self.cut += 1
                    self.socks[i] = self._open()
        for s, _ in self.socks:
            s.close()


def fds_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_idle_and_slowloris_clients_cannot_stop_ingestion_or_healthz(
    tmp_path: Path, many_fds: None
) -> None:
    """Every frame is committed, /healthz answers within 1 s throughout, fds stay bounded."""
    d = DaemonProc(tmp_path, metrics={"listen": "127.0.0.1:0"})
    d.start_cmd_prefix = SOFT_1024
    d.start()
    (ev,) = d.events("metrics.listening")
    addr = ev["address"]
    port = int(addr.rsplit(":", 1)[1])
    assert d.proc is not None
    base = fds_of(d.proc.pid)
    idle: list[socket.socket] = []
    slow = Slowloris(port)
    worst, codes, peak = 0.0, set(), base
    try:
        timeouts = 0
        while len(idle) < IDLE and timeouts < 10:  # established, one after the other
            try:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=1))
            except TimeoutError:
                timeouts += 1  # accept stopped (the old server past its fd limit)
        slow.start()
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < FLOOD_S:
            if i < FRAMES:
                (d.inbox / f"f{i:02d}.tif").write_bytes(tiff_bytes(source_array(i)))
                i += 1
            code, took = healthz(addr)
            codes.add(code)
            worst = max(worst, took)
            peak = max(peak, fds_of(d.proc.pid))
            time.sleep(0.1)  # the probe's interval, not synchronisation
    finally:
        slow.stop.set()
        slow.join(10)
        for s in idle:
            s.close()
    print(f"healthz {worst:.3f} s; fds {base} to {peak}; {len(idle)} idle; {slow.cut} cut")
    assert codes == {200} and worst < 1.0, (codes, worst)
    assert slow.cut > 0  # the server cut slowloris clients at their header deadline
    assert peak < base + ev["max_connections"] + 64 and peak < 1024, (base, peak)
    rows = d.wait_rows(FRAMES, 60)
    assert sorted(Path(p).name for p in rows) == [f"f{i:02d}.tif" for i in range(FRAMES)]
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    (line,) = [x for x in metrics.splitlines() if x.startswith("tiffsink_open_fds ")]
    assert 0 < float(line.split()[1]) < 1024
    assert d.stop() == 0
    log = d.log_path.read_text()
    assert "Traceback" not in log and all(x.startswith("{") for x in log.splitlines())


def test_a_new_connection_evicts_the_oldest_idle_one(tmp_path: Path) -> None:
    """Past max_connections, the client that waited longest for its request is closed."""
    d = DaemonProc(tmp_path, metrics={"listen": "127.0.0.1:0"}).start()
    (ev,) = d.events("metrics.listening")
    host, port = ev["address"].rsplit(":", 1)
    socks = [socket.create_connection((host, int(port)), timeout=5) for _ in range(3)]
    more: list[socket.socket] = []
    try:
        for _ in range(ev["max_connections"]):
            more.append(socket.create_connection((host, int(port)), timeout=5))
        # The first (oldest) connection is closed by the server: EOF, without a request.
        assert socks[0].recv(1) == b""
        more[-1].sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        assert more[-1].recv(64).startswith(b"HTTP/1.1 200 ")
    finally:
        for s in socks + more:
            with contextlib.suppress(OSError):
                s.close()


def raw(addr: tuple[str, int], request: bytes) -> bytes:
    """Send `request` as it is; the whole reply, up to the server's close."""
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    srv = StatusServer(Health(), "127.0.0.1:0")
    try:
        yield srv.address
    finally:
        srv.close()


@pytest.mark.parametrize("method", ["HEAD", "TRACE", "get", "OPTIONS", "POST", "FOO", "PROPFIND"])
def test_every_method_but_get_is_405_with_allow_get(server: tuple[str, int], method: str) -> None:
    """HEAD, TRACE, lowercase and unknown methods: 405 and `Allow: GET`, never 501."""
    reply = raw(server, f"{method} /status HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"405" and b"\r\nAllow: GET" in head
    assert body == (b"" if method == "HEAD" else b"read-only: GET only\n")


@pytest.mark.parametrize(
    "query", ["w=" + "9" * 5000, "w=" + "1" * 4 + "0", "w=%00", "w=\u0661\u0662", "a=1&" * 50]
)
def test_a_bad_query_is_a_short_plain_400(server: tuple[str, int], query: str) -> None:
    """`?w=` and 5,000 digits (or any bad query): 400, a short text/plain body of ours."""
    target = f"/rows/0.png?{query}".encode()
    reply = raw(server, b"GET " + target + b" HTTP/1.1\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400" and b"Content-Type: text/plain" in head
    assert len(body) <= 200 and body.startswith((b"w must be", b"only ?w=N", b"malformed"))


def test_an_oversized_request_head_is_refused(server: tuple[str, int]) -> None:
    """A head past 8 KiB gets 431 instead of being buffered."""
    reply = raw(server, b"GET /status HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n")
    assert reply.split(b" ")[1] == b"431"


def test_client_aborts_log_nothing_but_json(tmp_path: Path) -> None:
    """Clients that reset mid-request or mid-response: no traceback, only JSON lines."""
    d = DaemonProc(tmp_path, metrics={"listen": "127.0.0.1:0"}).start()
    (d.inbox / "one.tif").write_bytes(tiff_bytes(source_array(1, (512, 512))))
    d.wait_rows(1)
    host, port = d.events("metrics.listening")[0]["address"].rsplit(":", 1)
    for i in range(30):
        s = socket.create_connection((host, int(port)), timeout=5)
        reqs = (b"GET /rows/0.png HTT", b"GET /rows/0.png HTTP/1.1\r\n\r\n", b"GET /sta")
        s.sendall(reqs[i % 3])
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # linger 0: a reset, as a killed browser tab sends
    assert raw((host, int(port)), b"GET /healthz HTTP/1.1\r\n\r\n").endswith(b"\r\n\r\nok\n")
    assert d.stop() == 0
    log = d.log_path.read_text()
    assert "Traceback" not in log and all(x.startswith("{") for x in log.splitlines())


def test_health_fails_past_ninety_percent_of_the_fd_limit() -> None:
    """/healthz says why once open descriptors pass 90% of RLIMIT_NOFILE."""
    h = Health()
    h.fds = FdWatch(count=lambda: 901, limit=lambda: 1000)
    assert h.problem() == "901 of 1000 file descriptors open (RLIMIT_NOFILE): a leak, or too many"
    h.fds = FdWatch(count=lambda: 899, limit=lambda: 1000)
    assert h.problem() is None


def test_the_units_give_the_descriptors_the_code_relies_on() -> None:
    """Both shipped units and install-service's set LimitNOFILE= to fds.NOFILE, which
    holds the HTTP ceiling four times over."""
    for unit in (default_unit(instance=False), default_unit(instance=True)):
        assert re.findall(r"^LimitNOFILE=(.*)$", unit, re.M) == [str(NOFILE)]
    assert NOFILE >= 4 * HTTP_CONNECTIONS and http_connections(NOFILE) == HTTP_CONNECTIONS
    assert http_connections(1024) == 256  # started without the unit: a quarter of 1,024
