"""A small HTTP/1.x server whose clients cannot hurt the process it runs in.

The standard library's ThreadingHTTPServer gives every connection a thread and waits
for its request forever: 1,024 idle connections took every file descriptor of the
daemon, and its ingestion with them. Here one I/O thread owns every socket (a selector):
it reads request heads, writes responses, and enforces
  - a bound on connections (`max_connections`): a connection past it evicts the one
    that has waited longest for its request, so a flood of idle clients cannot lock out
    the next /healthz probe;
  - a header deadline (the whole request head within HEADER_TIMEOUT_S, so slowloris
    dribbling a byte at a time gets nowhere) and an idle deadline (IDLE_TIMEOUT_S
    without a byte either way), and a deadline for writing the response.
A complete head goes to a fixed pool of HANDLER_THREADS through a bounded queue (full:
503 at once); a handler only computes the response bytes and never touches a socket, so
a client that stops reading costs a buffer, not a thread. One request per connection
(`Connection: close`). Client aborts and timeouts are one throttled debug line, never a
traceback.
"""

from __future__ import annotations

import contextlib
import errno
import queue
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from ..logthrottle import throttle

HEADER_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 30.0
LINGER_S = 2.0  # after the response: read what the client still sends, then close
MAX_HEAD_BYTES = 8192
HANDLER_THREADS = 4
QUEUE_DEPTH = 64
ACCEPT_BATCH = 64  # accepts per wake-up, so reads and writes keep their turn
SWEEP_EVERY_S = 0.25
READING, HANDLING, WRITING, LINGERING = range(4)
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

App = Callable[[bytes], bytes]  # request head (no final blank line) -> whole response


def plain(code: int, reason: str, text: str, extra: str = "") -> bytes:
    """A complete plain-text response, closing the connection."""
    body = text.encode()
    return (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    ).encode() + body


BUSY = plain(503, "Service Unavailable", "busy: try again\n", "Retry-After: 1\r\n")
TOO_LARGE = plain(431, "Request Header Fields Too Large", "request head too large\n")
INTERNAL = plain(500, "Internal Server Error", "internal error\n")


class _Conn:
    __slots__ = ("at", "buf", "out", "peer", "sent", "sock", "state", "until")

    def __init__(self, sock: socket.socket, peer: str, now: float) -> None:
        self.sock, self.peer = sock, peer
        self.buf = bytearray()
        self.out = b""
        self.sent = 0
        self.state = READING
        self.until = now + HEADER_TIMEOUT_S  # the deadline of the current phase
        self.at = now  # last byte either way


class BoundedServer:
    """Serves `app` on `sock` (bound and listening) until `close`."""

    def __init__(self, sock: socket.socket, app: App, max_connections: int) -> None:
        self.app, self.max_connections = app, max_connections
        self._listen = sock
        sock.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(sock, selectors.EVENT_READ)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._conns: dict[int, _Conn] = {}  # in accept order: the oldest is first
        self._jobs: queue.Queue[tuple[_Conn, bytes]] = queue.Queue(QUEUE_DEPTH)
        self._done: deque[tuple[_Conn, bytes]] = deque()
        self._paused_until = 0.0  # accept() ran out of descriptors: wait a moment
        self._closing = False
        self._threads = [threading.Thread(target=self._io, name="tiffsink-http", daemon=True)]
        for i in range(HANDLER_THREADS):
            t = threading.Thread(target=self._handle, name=f"tiffsink-http-{i}", daemon=True)
            self._threads.append(t)
        for t in self._threads:
            t.start()

    @property
    def connections(self) -> int:
        return len(self._conns)

    # -- the I/O thread -------------------------------------------------------------
    def _io(self) -> None:
        next_sweep = 0.0
        while not self._closing:
            for key, mask in self._sel.select(SWEEP_EVERY_S):
                if key.fileobj is self._listen:
                    self._accept()
                elif key.fileobj is self._wake_r:
                    self._drain_wake()
                elif mask & selectors.EVENT_WRITE:
                    self._write(key.data)
                else:
                    self._read(key.data)
            self._answered()
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep = now + SWEEP_EVERY_S
                self._sweep(now)
        for conn in list(self._conns.values()):
            self._drop(conn, None)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = self._listen.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in _OUT_OF_FDS and not self._evict():
                    self._pause_accepting()
                    throttle.warning("http.refused", by="why", why="out of file descriptors")
                return
            if len(self._conns) >= self.max_connections and not self._evict():
                sock.close()  # every connection is being answered: refuse this one
                throttle.debug("http.client_dropped", by="why", why="too many connections")
                continue
            sock.setblocking(False)
            conn = _Conn(sock, "{}:{}".format(*addr[:2]), time.monotonic())
            self._conns[sock.fileno()] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _evict(self) -> bool:
        """Close the connection that has waited longest for its request; False if none."""
        for conn in self._conns.values():
            if conn.state == READING:
                self._drop(conn, "evicted: too many connections")
                return True
        return False

    def _pause_accepting(self) -> None:
        self._sel.unregister(self._listen)
        self._paused_until = time.monotonic() + 0.1

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as e:
            self._drop(conn, f"reset: {e.strerror}")
            return
        if not data:
            self._drop(conn, "closed by client" if conn.state == READING else None)
            return
        conn.at = time.monotonic()
        if conn.state == LINGERING:
            return  # a body or more requests we do not read: discarded until EOF
        conn.buf += data
        if conn.buf.startswith((b"\r", b"\n")):  # blank lines before a request: allowed
            del conn.buf[: len(conn.buf) - len(conn.buf.lstrip(b"\r\n"))]
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            end = conn.buf.find(b"\n\n")
        if end < 0 and len(conn.buf) <= MAX_HEAD_BYTES:
            return
        self._sel.unregister(conn.sock)
        conn.state = HANDLING
        if end < 0 or end > MAX_HEAD_BYTES:
            self._respond(conn, TOO_LARGE)
            return
        try:
            self._jobs.put_nowait((conn, bytes(conn.buf[:end])))
        except queue.Full:
            self._respond(conn, BUSY)
        conn.buf = bytearray()

    def _answered(self) -> None:
        while self._done:
            conn, out = self._done.popleft()
            if conn.sock.fileno() >= 0:
                self._respond(conn, out)

    def _respond(self, conn: _Conn, out: bytes) -> None:
        conn.state, conn.out, conn.sent = WRITING, out, 0
        conn.until = time.monotonic() + WRITE_TIMEOUT_S
        self._sel.register(conn.sock, selectors.EVENT_WRITE, conn)
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        try:
            n = conn.sock.send(memoryview(conn.out)[conn.sent : conn.sent + (1 << 18)])
        except BlockingIOError:
            return
        except OSError as e:
            self._drop(conn, f"reset: {e.strerror}")
            return
        conn.sent += n
        conn.at = time.monotonic()
        if conn.sent < len(conn.out):
            return
        # All sent: half-close and read until the client closes, so that unread bytes
        # of its request do not make the kernel reset the connection under the answer.
        conn.state, conn.out, conn.until = LINGERING, b"", conn.at + LINGER_S
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(conn, None)
            return
        self._sel.modify(conn.sock, selectors.EVENT_READ, conn)

    def _sweep(self, now: float) -> None:
        """Close connections past their deadline; resume accepting after a pause."""
        if self._paused_until and now >= self._paused_until:
            self._paused_until = 0.0
            self._sel.register(self._listen, selectors.EVENT_READ)
        for conn in list(self._conns.values()):
            if conn.state == HANDLING:
                continue
            if now >= conn.until:
                phase = {READING: "header", WRITING: "write"}.get(conn.state)
                self._drop(conn, f"{phase} timeout" if phase else None)
            elif now - conn.at >= IDLE_TIMEOUT_S:
                self._drop(conn, "idle timeout" if conn.state != LINGERING else None)

    def _drop(self, conn: _Conn, why: str | None) -> None:
        """Close `conn`; `why` (a client's abort or a timeout) is a throttled debug line."""
        fd = conn.sock.fileno()
        if fd < 0:
            return
        if conn.state != HANDLING:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(conn.sock)
        self._conns.pop(fd, None)
        conn.sock.close()
        if why is not None:
            throttle.debug("http.client_dropped", by="why", why=why, peer=conn.peer)

    # -- handler threads: compute responses, never touch a socket -------------------
    def _handle(self) -> None:
        while not self._closing:
            try:
                conn, head = self._jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                out = self.app(head)
            except Exception as e:  # a bug: answer 500, log it (throttled), keep serving
                throttle.error("http.error", by="type", type=type(e).__name__, detail=str(e))
                out = INTERNAL
            self._done.append((conn, out))
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full: the I/O thread is awake anyway
            self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass

    def close(self) -> None:
        """Stop serving; every connection is closed."""
        self._closing = True
        self._wake()
        for t in self._threads:
            t.join(5)
        self._sel.close()
        self._listen.close()
        self._wake_r.close()
        self._wake_w.close()
