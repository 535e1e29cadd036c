"""The daemon's HTTP endpoint, read-only: the dashboard page, rows as PNG, /status,
/metrics and /healthz.

Served from its own threads by the standard library's ThreadingHTTPServer; handlers
only read Health and open their own read-only view of the dataset, so they never block
the main loop. Requests name rows by number only; anything malformed gets a 4xx.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

from ..errors import ConfigError
from .health import Health
from .page import PAGE
from .rowimages import RowImages

PATHS = ("/", "/status", "/latest.png", "/rows/{n}.png", "/metrics", "/healthz")
RECENT = 16  # thumbnails on the page
ROW_PNG = re.compile(r"/rows/(\d{1,15})\.png")
FOREVER = "public, max-age=31536000, immutable"  # a committed row never changes


def _side(query: str) -> int | None:
    """The optional ?w=N (16..4096) a thumbnail asks for; ValueError otherwise."""
    q = parse_qs(query, strict_parsing=False)
    if not q:
        return None
    if set(q) != {"w"} or len(q["w"]) != 1 or not q["w"][0].isdigit():
        raise ValueError("only ?w=N is understood")
    w = int(q["w"][0])
    if not 16 <= w <= 4096:
        raise ValueError("w must be 16..4096")
    return w


def _handler(health: Health, images: RowImages | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # A request too malformed to parse still gets a status line (400), not HTTP/0.9.
        default_request_version = "HTTP/1.0"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            path = url.path
            if path == "/metrics":
                self._send(200, health.metrics.render(), "text/plain; version=0.0.4")
            elif path == "/healthz":
                p = health.problem()
                self._send(503 if p else 200, (p or "ok").encode() + b"\n", "text/plain")
            elif path == "/status":
                st = health.status()
                st["recent"] = images.recent(RECENT) if images else []
                if images is not None:  # failures and the chart: from the index
                    st.update(images.history())
                self._send(200, json.dumps(st).encode(), "application/json", "no-store")
            elif path in ("/", "/index.html"):
                self._send(200, PAGE.encode(), "text/html; charset=utf-8", "no-store")
            elif path == "/latest.png":
                self._row(None, url.query)
            elif m := ROW_PNG.fullmatch(path):
                self._row(int(m.group(1)), url.query)
            else:
                self._send(404, b"not found\n", "text/plain")

        def _row(self, row: int | None, query: str) -> None:
            try:
                side = _side(query)
            except ValueError as e:
                self._send(400, f"{e}\n".encode(), "text/plain")
                return
            png = images.png(row, side) if images else None
            if png is None:
                self._send(404, b"no such committed row\n", "text/plain")
            else:
                cache = "no-store" if row is None else FOREVER
                self._send(200, png, "image/png", cache)

        def _refuse(self) -> None:
            self._send(405, b"read-only: GET only\n", "text/plain", allow=True)

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

        def _send(
            self, code: int, body: bytes, ctype: str, cache: str = "", allow: bool = False
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            if cache:
                self.send_header("Cache-Control", cache)
            if allow:
                self.send_header("Allow", "GET")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


class StatusServer:
    """Listens on `listen` ("host:port"; port 0 picks one) until `close`."""

    def __init__(self, health: Health, listen: str, dataset: Path | None = None) -> None:
        host, _, port = listen.rpartition(":")
        images = RowImages(dataset) if dataset is not None else None
        try:
            self._server = ThreadingHTTPServer(
                (host.strip("[]"), int(port)), _handler(health, images)
            )
        except OSError as e:
            raise ConfigError(None, "metrics.listen", f"cannot listen on {listen}: {e}") from e
        self._server.daemon_threads = True
        structlog.get_logger("tiffsink").info(
            "metrics.listening", address="{}:{}".format(*self.address), paths=list(PATHS)
        )
        threading.Thread(
            target=self._server.serve_forever, daemon=True, name="tiffsink-metrics"
        ).start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
