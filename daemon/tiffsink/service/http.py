"""The daemon's HTTP endpoint: /metrics, /healthz and /status, read-only.

Served from its own thread by the standard library's ThreadingHTTPServer; handlers only
read Health (and render the metrics registry), so they never block the main loop.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from .health import Health

PATHS = ("/metrics", "/healthz", "/status")


def _handler(health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, health.metrics.render(), "text/plain; version=0.0.4")
            elif path == "/healthz":
                p = health.problem()
                self._send(503 if p else 200, (p or "ok").encode() + b"\n", "text/plain")
            elif path == "/status":
                self._send(200, json.dumps(health.status()).encode(), "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


class StatusServer:
    """Listens on `listen` ("host:port"; port 0 picks one) until `close`."""

    def __init__(self, health: Health, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        self._server = ThreadingHTTPServer((host.strip("[]"), int(port)), _handler(health))
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
