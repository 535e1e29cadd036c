"""The daemon's HTTP endpoint, read-only: the dashboard page, rows as PNG, /status,
/metrics and /healthz.

Served by `httpserver.BoundedServer` (one I/O thread, a few handler threads, bounded
connections and deadlines), so no client, idle or hostile, can take descriptors or
threads from ingestion. Handlers only read Health and open their own read-only view of
the dataset, so they never block the main loop. Requests name rows by number only;
only GET is served (anything else is 405), and anything malformed gets a short,
plain-text 4xx.
"""

from __future__ import annotations

import json
import re
import socket
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import structlog

from ..errors import ConfigError
from . import fds
from .health import Health
from .httpserver import BoundedServer
from .page import PAGE
from .rowimages import RowImages

PATHS = ("/", "/status", "/latest.png", "/rows/{n}.png", "/metrics", "/healthz")
RECENT = 16  # thumbnails on the page
ROW_PNG = re.compile(r"/rows/(\d{1,15})\.png")
FOREVER = "public, max-age=31536000, immutable"  # a committed row never changes
TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 method token
VERSION = re.compile(rb"HTTP/1\.[01]")
MAX_ERROR_CHARS = 200  # a 400's body: short, plain, ours


class BadRequest(ValueError):
    """The request cannot be served as asked; the message is the (short) 400 body."""


def _side(query: str) -> int | None:
    """The optional ?w=N (16..4096) a thumbnail asks for; BadRequest otherwise."""
    try:
        q = parse_qs(query, strict_parsing=False, max_num_fields=4)
    except ValueError:
        raise BadRequest("only ?w=N is understood") from None
    if not q:
        return None
    if set(q) != {"w"} or len(q["w"]) != 1:
        raise BadRequest("only ?w=N is understood")
    v = q["w"][0]
    if not (v.isascii() and v.isdigit() and len(v) <= 4 and 16 <= int(v) <= 4096):
        raise BadRequest("w must be a whole number from 16 to 4096")
    return int(v)


def response(code: int, body: bytes, ctype: str, cache: str = "", head_only: bool = False) -> bytes:
    """The whole response; the connection closes after it."""
    lines = [
        f"HTTP/1.1 {code} {HTTPStatus(code).phrase}",
        f"Content-Type: {ctype}",
        f"Content-Length: {len(body)}",
        "X-Content-Type-Options: nosniff",
        "Connection: close",
    ]
    if cache:
        lines.append(f"Cache-Control: {cache}")
    if code == 405:
        lines.append("Allow: GET")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head if head_only else head + body


def _text(code: int, text: str, head_only: bool = False) -> bytes:
    return response(code, text.encode() + b"\n", "text/plain", head_only=head_only)


class Routes:
    """What each GET path answers; called from the server's handler threads."""

    def __init__(self, health: Health, images: RowImages | None) -> None:
        self.health, self.images = health, images

    def __call__(self, head: bytes) -> bytes:
        line = head.split(b"\n", 1)[0].rstrip(b"\r")
        parts = line.split(b" ")
        if len(parts) != 3 or not TOKEN.fullmatch(parts[0]) or not VERSION.fullmatch(parts[2]):
            return _text(400, "malformed request line")
        method, target = parts[0], parts[1]
        if method != b"GET":  # HEAD, TRACE, "get", anything: read-only, GET only
            return _text(405, "read-only: GET only", head_only=method == b"HEAD")
        if not target.isascii() or not (target.startswith(b"/") or b"://" in target):
            return _text(400, "malformed request target")
        try:
            return self.get(target.decode("ascii"))
        except BadRequest as e:
            return _text(400, str(e)[:MAX_ERROR_CHARS])

    def get(self, target: str) -> bytes:
        try:
            url = urlsplit(target)
        except ValueError:
            raise BadRequest("malformed request target") from None
        path, h = url.path, self.health
        if path == "/metrics":
            return response(200, h.metrics.render(), "text/plain; version=0.0.4")
        if path == "/healthz":
            p = h.problem()
            return _text(503 if p else 200, p or "ok")
        if path == "/status":
            st = h.status()
            st["recent"] = self.images.recent(RECENT) if self.images else []
            if self.images is not None:  # failures and the chart: from the index
                st.update(self.images.history())
            return response(200, json.dumps(st).encode(), "application/json", "no-store")
        if path in ("/", "/index.html"):
            return response(200, PAGE.encode(), "text/html; charset=utf-8", "no-store")
        if path == "/latest.png":
            return self._row(None, url.query)
        if m := ROW_PNG.fullmatch(path):
            return self._row(int(m.group(1)), url.query)
        return _text(404, "not found")

    def _row(self, row: int | None, query: str) -> bytes:
        side = _side(query)
        png = self.images.png(row, side) if self.images else None
        if png is None:
            return _text(404, "no such committed row")
        return response(200, png, "image/png", "no-store" if row is None else FOREVER)


class StatusServer:
    """Listens on `listen` ("host:port"; port 0 picks one) until `close`."""

    def __init__(self, health: Health, listen: str, dataset: Path | None = None) -> None:
        host, _, port = listen.rpartition(":")
        images = RowImages(dataset) if dataset is not None else None
        try:
            sock = _listen(host.strip("[]"), int(port))
        except OSError as e:
            raise ConfigError(None, "metrics.listen", f"cannot listen on {listen}: {e}") from e
        self.max_connections = fds.http_connections()
        self._server = BoundedServer(sock, Routes(health, images), self.max_connections)
        self.address: tuple[str, int] = sock.getsockname()[:2]
        health.metrics.http_connections.set_function(lambda: self._server.connections)
        structlog.get_logger("tiffsink").info(
            "metrics.listening",
            address="{}:{}".format(*self.address),
            paths=list(PATHS),
            max_connections=self.max_connections,
        )

    def close(self) -> None:
        self._server.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (IPv4 or IPv6, as the host resolves)."""
    family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family, backlog=512)
