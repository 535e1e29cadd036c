"""systemd integration: sd_notify datagrams, the rendered unit, and its hardening score.

The systemd-analyze checks run where the tool exists (Debian/Ubuntu: package `systemd`;
no running systemd is needed) and skip with the reason elsewhere.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tiffsink.config import Config, load_config
from tiffsink.errors import TiffsinkError
from tiffsink.service.sdnotify import Notifier, watchdog_interval_s
from tiffsink.service.unit import (
    config_rw_paths,
    default_unit,
    find_exec,
    install_service,
    render_unit,
)

from conftest import ROOT, write_config

MAX_EXPOSURE = 2.0


# --- sd_notify -------------------------------------------------------------------------


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket and its path (short: sun_path has 108 bytes)."""
    d = tempfile.mkdtemp(prefix="tsn-")
    path = os.path.join(d, "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(5)
    try:
        yield s, path
    finally:
        s.close()
        shutil.rmtree(d)


def test_notify_sends_each_message_as_one_exact_datagram(
    notify_socket: tuple[socket.socket, str],
) -> None:
    """READY/STATUS/WATCHDOG/STOPPING arrive byte for byte, one datagram per call."""
    sock, path = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path})
    sent = ["READY=1", "STATUS=12 rows, 0 failed", "WATCHDOG=1", "STOPPING=1"]
    for msg in sent:
        assert n.notify(msg) is True
    assert [sock.recv(4096) for _ in sent] == [m.encode() for m in sent]


def test_notify_joins_keyword_fields_with_newlines(
    notify_socket: tuple[socket.socket, str],
) -> None:
    """notify(READY=1, STATUS=...) sends both lines in one datagram."""
    sock, path = notify_socket
    Notifier({"NOTIFY_SOCKET": path}).notify(READY=1, STATUS="ok")
    assert sock.recv(4096) == b"READY=1\nSTATUS=ok"


def test_notify_reaches_an_abstract_socket() -> None:
    """A NOTIFY_SOCKET starting with '@' names a socket in the abstract namespace."""
    name = f"tiffsink-test-{secrets.token_hex(6)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).notify("READY=1") is True
        assert s.recv(4096) == b"READY=1"


def test_notifier_reads_notify_socket_from_the_environment(
    notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Notifier() with no argument uses $NOTIFY_SOCKET."""
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    Notifier().notify("WATCHDOG=1")
    assert sock.recv(4096) == b"WATCHDOG=1"


def test_notify_is_a_noop_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside systemd nothing is sent and notify() returns False."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    assert n.notify("READY=1") is False


def test_notify_swallows_send_errors(tmp_path: Path) -> None:
    """A socket path nobody listens on gives False, not an exception."""
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).notify("READY=1") is False


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    """WATCHDOG_USEC=60 s asks for a ping every 30 s."""
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())})


def test_watchdog_interval_is_none_when_not_asked_or_not_for_us() -> None:
    """No WATCHDOG_USEC, a zero one, or a WATCHDOG_PID of another process: None."""
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    other = str(os.getpid() + 1)
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": other}) is None


# --- the unit --------------------------------------------------------------------------


def _config(tmp_path: Path, listen: str = "") -> tuple[Config, Path]:
    """A config (written under tmp_path) whose four folders share no parent."""
    root = Path("/")
    path = write_config(
        tmp_path / "scope1.toml",
        {
            "watch": {"directory": str(root / "ts-inbox")},
            "dataset": {"directory": str(root / "ts-data" / "scope1")},
            "sources": {
                "after_ingest": "move",
                "done_directory": str(root / "ts-done"),
                "failed_directory": str(root / "ts-failed"),
            },
            "metrics": {"listen": listen},
        },
    )
    return load_config(path), path


def _directive(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def test_install_service_print_has_the_real_execstart_and_config(tmp_path: Path) -> None:
    """ExecStart runs the given program with `run --config` and the config's absolute path."""
    cfg, path = _config(tmp_path)
    text = install_service(cfg, path, True, None, exec_path="/opt/tiffsink/bin/tiffsink")
    assert _directive(text, "ExecStart") == [f"/opt/tiffsink/bin/tiffsink run --config {path}"]


def test_rendered_unit_lists_every_configured_folder_as_writable(tmp_path: Path) -> None:
    """ReadWritePaths has the dataset, inbox, done and failed folders, nothing else."""
    cfg, path = _config(tmp_path)
    text = install_service(cfg, path, True, None, exec_path="/usr/bin/tiffsink")
    assert _directive(text, "ReadWritePaths") == ["/ts-data/scope1 /ts-inbox /ts-done /ts-failed"]


def test_inbox_and_done_share_one_writable_mount(tmp_path: Path) -> None:
    """/srv/tiffsink/{inbox,done,failed} become /srv/tiffsink: a move stays a rename."""
    cfg, _ = _config(tmp_path)
    src = replace(
        cfg.sources,
        done_directory=Path("/srv/tiffsink/done"),
        failed_directory=Path("/srv/tiffsink/failed"),
    )
    cfg = replace(cfg, watch=replace(cfg.watch, directory=Path("/srv/tiffsink/inbox")), sources=src)
    assert config_rw_paths(cfg) == [Path("/ts-data/scope1"), Path("/srv/tiffsink")]


def test_rw_paths_drop_folders_inside_another(tmp_path: Path) -> None:
    """A dataset inside a listed folder needs no entry of its own."""
    cfg, _ = _config(tmp_path)
    cfg = replace(cfg, dataset=replace(cfg.dataset, directory=Path("/ts-inbox/.dataset")))
    assert config_rw_paths(cfg) == [Path("/ts-inbox"), Path("/ts-done"), Path("/ts-failed")]


def test_metrics_on_allows_inet_to_localhost_only(tmp_path: Path) -> None:
    """With [metrics] listen set: AF_INET/AF_INET6 allowed, IP traffic only to localhost."""
    cfg, path = _config(tmp_path, listen="127.0.0.1:9464")
    text = install_service(cfg, path, True, None, exec_path="/usr/bin/tiffsink")
    assert _directive(text, "RestrictAddressFamilies") == ["AF_UNIX AF_INET AF_INET6"]
    assert _directive(text, "IPAddressDeny") == ["any"]
    assert _directive(text, "IPAddressAllow") == ["localhost"]
    assert _directive(text, "PrivateNetwork") == []


def test_metrics_off_allows_no_inet_at_all(tmp_path: Path) -> None:
    """Without metrics: only AF_UNIX, no IP address allowed, a private network namespace."""
    cfg, path = _config(tmp_path)
    text = install_service(cfg, path, True, None, exec_path="/usr/bin/tiffsink")
    assert _directive(text, "RestrictAddressFamilies") == ["AF_UNIX"]
    assert _directive(text, "IPAddressAllow") == []
    assert _directive(text, "PrivateNetwork") == ["yes"]
    assert "AF_INET" not in "".join(_directive(text, "RestrictAddressFamilies"))


def test_unit_quotes_spaces_and_escapes_percent() -> None:
    """Paths with spaces are quoted and '%' is doubled (it starts a specifier in units)."""
    text = render_unit(
        Path("/etc/tiffsink/scope 1.toml"), "/usr/bin/tiffsink", False, "",
        [Path("/srv/data 100%")], "tiffsink",
    )  # fmt: skip
    assert _directive(text, "ExecStart") == [
        '/usr/bin/tiffsink run --config "/etc/tiffsink/scope 1.toml"'
    ]
    assert _directive(text, "ReadWritePaths") == ['"/srv/data 100%%"']


def test_protect_home_is_read_only_when_a_folder_is_under_home() -> None:
    """ProtectHome=yes would hide a dataset under /home; read-only keeps it reachable."""
    home = render_unit(
        Path("/etc/t.toml"), "/usr/bin/tiffsink", False, "", [Path("/home/lab/ds")], "u"
    )
    other = render_unit(Path("/etc/t.toml"), "/usr/bin/tiffsink", False, "", [Path("/srv/ds")], "u")
    assert _directive(home, "ProtectHome") == ["read-only"]
    assert _directive(other, "ProtectHome") == ["yes"]


def test_find_exec_prefers_the_running_console_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started as .../bin/tiffsink, the unit runs that same script."""
    script = tmp_path / "bin" / "tiffsink"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    monkeypatch.setattr("sys.argv", [str(script), "install-service"])
    assert find_exec() == str(script.resolve())


def test_find_exec_keeps_the_interpreter_of_python_dash_m(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run as `python -m tiffsink`, the unit uses that python, not a tiffsink on PATH."""
    monkeypatch.setattr("sys.argv", [str(ROOT / "daemon" / "tiffsink" / "__main__.py")])
    assert find_exec() == f"{Path(sys.executable).absolute()} -m tiffsink"


def test_find_exec_falls_back_to_python_dash_m(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no tiffsink script anywhere, the unit runs `python -m tiffsink`."""
    monkeypatch.setattr("sys.argv", ["-c"])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_exec().endswith(" -m tiffsink")


def test_shipped_units_equal_the_template() -> None:
    """systemd/*.service are render_unit's output for the default locations."""
    shipped = ROOT / "systemd"
    assert (shipped / "tiffsink.service").read_text() == default_unit(instance=False)
    assert (shipped / "tiffsink@.service").read_text() == default_unit(instance=True)


def test_install_service_writes_the_unit_and_prints_next_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The unit lands in unit_dir; the output names daemon-reload and enable --now."""
    cfg, path = _config(tmp_path)
    units = tmp_path / "units"
    text = install_service(cfg, path, False, None, units, exec_path="/usr/bin/tiffsink")
    assert (units / "tiffsink.service").read_text() == text
    out = capsys.readouterr().out
    assert "systemctl daemon-reload" in out
    assert "systemctl enable --now tiffsink.service" in out
    assert "install -d -o tiffsink -g tiffsink /ts-data/scope1 /ts-inbox" in out


def test_install_service_with_a_name_writes_a_dedicated_unit(tmp_path: Path) -> None:
    """--name scope1 gives tiffsink-scope1.service rendered from that config."""
    cfg, path = _config(tmp_path)
    units = tmp_path / "units"
    install_service(cfg, path, False, "scope1", units, exec_path="/usr/bin/tiffsink")
    text = (units / "tiffsink-scope1.service").read_text()
    assert _directive(text, "Description") == ["tiffsink TIFF ingest daemon (scope1)"]
    assert f"--config {path}" in _directive(text, "ExecStart")[0]


def test_install_service_rejects_a_name_systemd_cannot_use(tmp_path: Path) -> None:
    """An instance name with '/' or spaces is refused before anything is written."""
    cfg, path = _config(tmp_path)
    with pytest.raises(TiffsinkError, match="--name"):
        install_service(cfg, path, False, "a/b", tmp_path / "units")
    assert not (tmp_path / "units").exists()


# --- systemd-analyze -------------------------------------------------------------------


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    helptext = subprocess.run([tool, "--help"], capture_output=True, text=True).stdout
    if "--offline" not in helptext:
        pytest.skip("systemd-analyze too old for --offline (needs systemd >= 250)")
    return tool


def _units_for_analysis(tmp_path: Path) -> list[Path]:
    """The shipped units (an instance of the template), a metrics-on rendering, and one
    with spaces, '$', '%' and quotes in its paths (to check the quoting parses).

    verify checks that the ExecStart program exists and is executable, so
    /usr/local/bin/tiffsink (not installed here) is swapped for this Python after
    rendering (so ProtectHome= is what it is for the default paths).
    """
    exe = sys.executable
    out = tmp_path / "units"
    out.mkdir()
    plain = default_unit(False).replace("/usr/local/bin/tiffsink", exe)
    templ = default_unit(True).replace("/usr/local/bin/tiffsink", exe)
    metrics = render_unit(
        Path("/etc/tiffsink/tiffsink.toml"), "/usr/local/bin/tiffsink", False, "127.0.0.1:9464",
        [Path("/var/lib/tiffsink"), Path("/srv/tiffsink")], "tiffsink",
    ).replace("/usr/local/bin/tiffsink", exe)  # fmt: skip
    (out / "tiffsink.service").write_text(plain)
    (out / "tiffsink@.service").write_text(templ)
    odd = render_unit(
        Path("/etc/tiffsink/scope 1 $HOME 100%.toml"), exe, False, "",
        [Path("/srv/data 100%"), Path('/srv/"q"')], "tiffsink",
    )  # fmt: skip
    (out / "tiffsink-metrics.service").write_text(metrics)
    (out / "tiffsink-odd.service").write_text(odd)
    names = ["tiffsink.service", "tiffsink@scope1.service", "tiffsink-metrics.service"]
    return [out / n for n in [*names, "tiffsink-odd.service"]]


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the units: exit 0, and no message at all.

    Nothing is filtered out of its output; the only adjustment is the ExecStart program
    (see _units_for_analysis). The tiffsink user need not exist: verify does not look it up.
    """
    tool = _analyze()
    units = _units_for_analysis(tmp_path)
    r = subprocess.run(
        [tool, "verify", "--man=no", "--recursive-errors=no", *map(str, units)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert (r.stdout + r.stderr).strip() == ""


def test_systemd_analyze_security_exposure_is_at_most_2(tmp_path: Path) -> None:
    """`systemd-analyze security --offline=true` rates every variant <= 2.0 ("OK" or better)."""
    tool = _analyze()
    for unit in _units_for_analysis(tmp_path):
        r = subprocess.run(
            [tool, "security", "--offline=true", "--no-pager", str(unit)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", r.stdout)
        assert m, r.stdout + r.stderr
        assert float(m.group(1)) <= MAX_EXPOSURE, f"{unit.name}: {m.group(0)}\n{r.stdout}"
