"""sd_notify(3) without a dependency: tell systemd we are ready, alive, or stopping.

systemd (Type=notify) passes `$NOTIFY_SOCKET`, an AF_UNIX datagram socket, either a path
or an abstract name written with a leading '@'. Each message is one datagram of
newline-separated `KEY=VALUE` lines such as "READY=1" or "WATCHDOG=1". Outside systemd
the variable is unset and every call is a no-op, so the daemon never has to ask.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    """Sends sd_notify datagrams to `$NOTIFY_SOCKET` (read once, when built)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        self.address: str | None
        if not raw or raw[0] not in "/@":
            # Unset, or a kind we do not speak (e.g. vsock:...): stay silent.
            self.address = None
        elif raw[0] == "@":
            self.address = "\0" + raw[1:]  # Linux abstract namespace
        else:
            self.address = raw

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, message: str = "", /, **fields: object) -> bool:
        """Send `message` and/or `KEY=value` lines as one datagram; True if it was sent.

        `notify("READY=1")`, `notify(READY=1, STATUS="12 rows")` and
        `notify("STOPPING=1")` are all fine. Send errors are swallowed (False): a
        notification must never take the daemon down.
        """
        if self.address is None:
            return False
        lines = [message] if message else []
        lines += [f"{k}={v}" for k, v in fields.items()]
        if not lines:
            return False
        data = "\n".join(lines).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self.address)
                s.sendall(data)
        except OSError:
            return False
        return True


def watchdog_interval_s(env: Mapping[str, str] | None = None) -> float | None:
    """How often to send WATCHDOG=1: half of `$WATCHDOG_USEC`, or None when not asked.

    `$WATCHDOG_PID`, when present, names the process the watchdog is meant for; any
    other process (a child that inherited the environment) gets None.
    """
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000
