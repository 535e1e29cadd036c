"""The systemd unit: one template, rendered with the real paths by `tiffsink install-service`.

The files shipped in systemd/ are this template rendered with the default locations
(config in /etc/tiffsink, inbox under /srv/tiffsink, dataset under /var/lib/tiffsink);
tests/test_systemd.py checks they are identical, so the two cannot drift apart.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import re
import shlex
import shutil
import sys
from pathlib import Path
from string import Template

from ..config import Config
from ..errors import TiffsinkError
from .fds import NOFILE

DEFAULT_USER = "tiffsink"
DEFAULT_EXEC = "/usr/local/bin/tiffsink"
DEFAULT_CONFIG = Path("/etc/tiffsink/tiffsink.toml")
DEFAULT_INSTANCE_CONFIG = Path("/etc/tiffsink/%i.toml")
DEFAULT_RW_PATHS = (Path("/var/lib/tiffsink"), Path("/srv/tiffsink"))
UNIT_DIR = Path("/etc/systemd/system")

# Where ProtectHome=yes would hide a folder, the ExecStart binary or the config.
_HOMES = (Path("/home"), Path("/root"), Path("/run/user"))
# Where PrivateTmp=yes would: the service would see an empty /tmp of its own.
_TMPS = (Path("/tmp"), Path("/var/tmp"))
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")

TEMPLATE = Template(
    """\
# ${description}
# Appends every TIFF arriving in [watch] directory to one dataset.
#
# Written by `tiffsink install-service --config FILE`, which fills in the real
# ExecStart, config and folders. The copies shipped in systemd/ use the defaults:
# config in /etc/tiffsink/, instruments write under /srv/tiffsink (inbox, done,
# failed), datasets live under /var/lib/tiffsink; with tiffsink@.service, NAME.toml
# keeps its folders below those two (e.g. /srv/tiffsink/NAME/inbox and
# /var/lib/tiffsink/NAME). The file system is read-only for the daemon except the
# folders in ReadWritePaths=, and each of them must exist before the start (a missing
# one fails it with status=226/NAMESPACE).
# Check the hardening with: systemd-analyze security <this unit>

[Unit]
Description=${description}
# Start only once the file systems holding the folders are mounted (NFS/SMB included).
RequiresMountsFor=${rw_paths}
# Restart=on-failure tries again every 2 s; give up after 10 failures in 5 minutes.
StartLimitIntervalSec=300
StartLimitBurst=10

[Service]
# READY=1 once the dataset is open and the watch armed, STATUS= lines while running,
# STOPPING=1 on the way out; only the main process may send them.
Type=notify
NotifyAccess=main
ExecStart=${exec_start}
Restart=on-failure
RestartSec=2
# Exit status 2 is a problem a restart cannot fix (bad config, image spec differs from
# the dataset's, dataset locked by another writer): stay failed, the journal says why.
# Every other failure is restarted: 75 (an I/O error while committing, a deleted or
# replaced index, workers that cannot start for 2 minutes, and SIGHUP: drain, then
# start again with the config read anew), 1 (a bug, logged as daemon.crashed) and
# deaths by signal (watchdog, OOM killer). Exit 0 (SIGTERM: a stop asked for) is not.
# docs/operations.md has the table of exit statuses.
RestartPreventExitStatus=2
# WATCHDOG=1 is sent only while the pipeline makes progress; a wedged daemon is killed
# (SIGABRT) and restarted.
WatchdogSec=60
# Recovery of a dataset after a crash and arming inotify on a large inbox both happen
# before READY=1.
TimeoutStartSec=300
# SIGTERM goes to the supervisor only: it commits the batch in flight and stops its own
# workers. Whatever is still left (a decoder stuck in a codec) gets SIGKILL after.
KillMode=mixed
KillSignal=SIGTERM
TimeoutStopSec=60
# A decoder worker killed by the kernel's OOM killer (decompression bomb) is recorded
# as a crashed file and replaced by the supervisor; do not stop the whole service.
OOMPolicy=continue
# File descriptors the daemon relies on (service/fds.py NOFILE): its HTTP endpoint takes
# at most 512 connections and health fails past 90% of this. systemd's default soft
# limit, 1,024, is what idle clients once used up.
LimitNOFILE=${nofile}

# A dedicated system user owns the data. DynamicUser= is not suitable: its uid is not
# stable and the data must outlive the unit with one owner. Create it with
#   useradd --system --user-group --home-dir /var/lib/tiffsink --shell /usr/sbin/nologin ${user}
User=${user}
Group=${user}
# New files (images.npy, index.sqlite) are readable by the group, not by others: add
# the people who train on the dataset to this group. If instruments write the inbox
# as another user, give the daemon that group too, e.g. SupplementaryGroups=instruments.
UMask=0027

# --- file system: read-only, except the configured folders ---
ProtectSystem=strict
# install-service lists the inbox and done/failed folders as their common parent: each
# entry is a mount of its own, and a rename between two mounts fails (EXDEV).
ReadWritePaths=${rw_paths}
# "read-only" instead of "yes" when a folder, the config or the program is under /home.
ProtectHome=${protect_home}
# "no" when a folder, the config or the program is under /tmp or /var/tmp, which a
# private /tmp would hide from the daemon.
PrivateTmp=${private_tmp}
# A private /dev with only null, zero, urandom & co. /dev/shm, where the workers' row
# slots live, stays the host's and writable: PrivateDevices= bind-mounts it into the
# private /dev, and ProtectSystem= leaves the API file systems /dev, /proc, /sys alone.
PrivateDevices=yes
DevicePolicy=closed
PrivateMounts=yes
# Removes our leftover /dev/shm slot files when the last unit running as this user stops.
RemoveIPC=yes

# --- kernel, processes, privileges ---
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# Only our own processes are visible in /proc, and only /proc/PID: the CPU count comes
# from sched_getaffinity/sysfs, nothing reads /proc/sys or /proc/cpuinfo.
ProtectProc=invisible
ProcSubset=pid
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
RestrictSUIDSGID=yes
RestrictNamespaces=yes
RestrictRealtime=yes
LockPersonality=yes
# CPython (no JIT), numpy, OpenCV, tifffile and imagecodecs never need memory that is
# writable and executable.
MemoryDenyWriteExecute=yes
# Worker processes are started with multiprocessing "spawn" (fork + exec of the same
# Python, pipes, POSIX semaphores in /dev/shm): all inside @system-service, nothing
# privileged. A call outside the filter fails with EPERM instead of killing the process.
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM

# --- network ---
# AF_UNIX is needed for sd_notify and multiprocessing. install-service adds
# AF_INET/AF_INET6 and IPAddressAllow=localhost only when [metrics] listen is set;
# otherwise the daemon gets no network at all (files on NFS/SMB mounts still work: the
# kernel does that I/O).
RestrictAddressFamilies=${address_families}
IPAddressDeny=any
${network_extra}
[Install]
WantedBy=multi-user.target
"""
)


def _escape(value: str, keep_instance: bool) -> str:
    """Quote one word for a unit file: '%' is a specifier there, spaces split words."""
    s = value.replace("%", "%%")
    if keep_instance:
        s = s.replace("%%i", "%i").replace("%%I", "%I")
    if re.search(r'[\s"\\\']', s):
        s = '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return s


def _under(p: Path, parent: Path) -> bool:
    return p == parent or parent in p.parents


def _minimal(paths: list[Path]) -> list[Path]:
    """Drop duplicates and folders already inside another listed folder (order kept)."""
    out: list[Path] = []
    for p in paths:
        if not any(_under(p, q) for q in paths if q != p) and p not in out:
            out.append(p)
    return out


def _is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def program_paths(exec_path: str) -> list[Path]:
    """The program of `exec_path` and, for a script, its interpreter (symlinks followed)."""
    first = Path(exec_path.split(" ")[0])
    paths = [first, first.resolve()]
    try:
        with first.open("rb") as fh:
            head = fh.readline(512)
    except OSError:
        return paths
    if head.startswith(b"#!"):
        words = head[2:].decode("utf-8", "replace").split()
        if words:
            interp = Path(words[0])
            paths += [interp, interp.resolve()]
    return paths


def render_unit(
    config_path: Path,
    exec_path: str,
    instance: bool,
    metrics_listen: str,
    rw_paths: list[Path],
    user: str,
    *,
    description: str | None = None,
) -> str:
    """The unit text for running `exec_path run --config config_path`.

    `exec_path` may be several words (e.g. "/usr/bin/python3 -m tiffsink"). With
    `instance`, %i/%I in the paths stay systemd specifiers (the tiffsink@.service
    template). AF_INET/AF_INET6 and IPAddressAllow=localhost appear only with metrics.
    """
    keep = instance
    # ExecStart= also expands $VAR, so '$' is doubled there (not in ReadWritePaths=).
    words = [_escape(w, False) for w in exec_path.split(" ") if w]
    words += ["run", "--config", _escape(str(config_path), keep)]
    exec_start = " ".join(w.replace("$", "$$") for w in words)
    rws = _minimal(rw_paths)
    if not rws:
        raise ValueError("rw_paths: the daemon needs at least its dataset folder")
    seen = [*program_paths(exec_path), config_path, *rws]
    in_home = any(_under(p, h) for p in seen for h in _HOMES)
    in_tmp = bool(in_tmp_paths(seen))
    if metrics_listen:
        families = "AF_UNIX AF_INET AF_INET6"
        network_extra = f"# [metrics] listen = {metrics_listen}\nIPAddressAllow=localhost\n"
        if not _is_loopback(metrics_listen):
            network_extra += (
                "# Not a loopback address: allow your Prometheus server in a drop-in\n"
                "# (systemctl edit), e.g. IPAddressAllow=192.0.2.10\n"
            )
    else:
        families = "AF_UNIX"
        network_extra = "PrivateNetwork=yes\n"
    if description is None:
        description = "tiffsink TIFF ingest daemon" + (" (%i)" if instance else "")
    return TEMPLATE.substitute(
        description=description,
        exec_start=exec_start,
        user=user,
        rw_paths=" ".join(_escape(str(p), keep) for p in rws),
        protect_home="read-only" if in_home else "yes",
        private_tmp="no" if in_tmp else "yes",
        address_families=families,
        network_extra=network_extra,
        nofile=NOFILE,
    )


def in_tmp_paths(paths: list[Path]) -> list[Path]:
    """Those of `paths` under /tmp or /var/tmp (symlinks as given)."""
    return [p for p in paths if any(_under(p, t) for t in _TMPS)]


def default_unit(instance: bool) -> str:
    """The text of systemd/tiffsink.service (or tiffsink@.service with `instance`)."""
    return render_unit(
        DEFAULT_INSTANCE_CONFIG if instance else DEFAULT_CONFIG,
        DEFAULT_EXEC,
        instance,
        "",
        list(DEFAULT_RW_PATHS),
        DEFAULT_USER,
    )


def find_exec() -> str:
    """How to start this tiffsink: its console script, else `python -m tiffsink`."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    # sys.executable is kept as is: resolving a venv's python symlink leaves the venv.
    dash_m = f"{Path(sys.executable).absolute()} -m tiffsink"
    if argv0 is not None and argv0.name == "tiffsink" and argv0.is_file():
        return str(argv0.resolve())
    if argv0 is not None and argv0.name == "__main__.py":
        return dash_m  # `python -m tiffsink`: the same interpreter, not whatever is on PATH
    found = shutil.which("tiffsink")
    return str(Path(found).resolve()) if found else dash_m


def _move_folders(config: Config) -> list[Path]:
    src = config.sources
    return [config.watch.directory, *(p for p in (src.done_directory, src.failed_directory) if p)]


def _shared_parent(paths: list[Path]) -> Path | None:
    """The common parent of the inbox and done/failed, unless it is too broad (/, /srv)."""
    common = Path(os.path.commonpath(paths))
    return common if len(common.parts) >= 3 else None


def config_rw_paths(config: Config) -> list[Path]:
    """The folders the daemon writes: dataset, inbox, and done/failed when set.

    Each ReadWritePaths= entry is its own bind mount, and rename(2) between two mounts
    fails with EXDEV (shutil.move then copies every file). So the inbox and done/failed
    are listed as their common parent when that is at least two levels deep
    (/srv/tiffsink for /srv/tiffsink/{inbox,done}); otherwise separately.
    """
    movers = _move_folders(config)
    parent = _shared_parent(movers) if len(movers) > 1 else None
    return _minimal([config.dataset.directory, *([parent] if parent else movers)])


def install_service(
    config: Config,
    config_path: Path,
    print_only: bool,
    name: str | None,
    unit_dir: Path = UNIT_DIR,
    *,
    user: str = DEFAULT_USER,
    exec_path: str | None = None,
) -> str:
    """Render the unit for `config`; unless `print_only`, write it and print what's next.

    Returns the unit text. Without a name the unit is tiffsink.service; with one it is a
    dedicated tiffsink-NAME.service rendered from that config (the shipped
    tiffsink@.service template cannot know each instance's folders).
    """
    if name is not None and not _NAME_RE.fullmatch(name):
        raise TiffsinkError(None, f"--name {name!r}: use letters, digits, '_', '.' or '-'")
    unit_name = f"tiffsink-{name}.service" if name else "tiffsink.service"
    rws = config_rw_paths(config)
    exec_path = exec_path or find_exec()
    text = render_unit(
        config_path.absolute(),
        exec_path,
        False,
        config.metrics.listen,
        rws,
        user,
        description=f"tiffsink TIFF ingest daemon ({name})" if name else None,
    )
    tmps = in_tmp_paths([*program_paths(exec_path), config_path.absolute(), *rws])
    if tmps:
        print(
            f"note: {tmps[0]} is under a temporary folder, so the unit has PrivateTmp=no to "
            "see it; files there may be deleted at boot or by systemd-tmpfiles: keep the "
            "program, config and folders elsewhere for real use",
            file=sys.stderr,
        )
    if print_only:
        return text
    target = unit_dir / unit_name
    tmp = target.with_name(f".{unit_name}.tmp")
    try:
        unit_dir.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)
        os.replace(tmp, target)
    except OSError as e:
        raise TiffsinkError(
            target, f"cannot write the unit ({e.strerror}); run as root, or use --print"
        ) from None
    print(f"wrote {target}")
    print("next:")
    try:
        pwd.getpwnam(user)
    except KeyError:
        print(
            f"  useradd --system --user-group --home-dir /var/lib/tiffsink"
            f" --shell /usr/sbin/nologin {user}"
        )
    missing = [p for p in rws if not p.is_dir()]
    if missing:
        dirs = " ".join(shlex.quote(str(p)) for p in missing)
        print(f"  install -d -o {user} -g {user} {dirs}")
    print("  systemctl daemon-reload")
    print(f"  systemctl enable --now {unit_name}")
    print(f"  journalctl -u {unit_name} -f")
    movers = _move_folders(config)
    if len(_minimal(movers)) > 1 and _shared_parent(movers) is None:
        print(
            "note: the inbox and done/failed folders share no parent two levels deep, so they"
            " are separate mounts in the unit; moving a file between them copies it"
        )
    homes = [p for p in program_paths(exec_path) if any(_under(p, h) for h in _HOMES)]
    if homes:
        print(
            f"note: {homes[-1]} is under a home directory, which the {user} user usually"
            " cannot read; install tiffsink outside (e.g. python3 -m venv /opt/tiffsink)"
        )
    if config.metrics.listen and not _is_loopback(config.metrics.listen):
        print(
            f"note: metrics listen on {config.metrics.listen}, but the unit allows only"
            f" localhost traffic; add your Prometheus server with `systemctl edit {unit_name}`"
            " (IPAddressAllow=ADDRESS)"
        )
    return text
