"""The `tiffsink` command: parse arguments, run one subcommand, map errors to exit codes.

Errors tiffsink expects (TiffsinkError) end the command with their message and exit
code 2; nothing here prints a traceback for a bad config or a locked dataset. A fault a
restart may cure (RestartableError: an I/O error while committing, a lost index, workers
that cannot start) exits 75 (EX_TEMPFAIL), which systemd restarts.
"""

from __future__ import annotations

import signal
import sys

from ..errors import DatasetIOError, RestartableError, TiffsinkError
from .parser import build_parser

EX_TEMPFAIL = 75


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("run", "ingest"):
        # `tiffsink status | head` should end quietly, like any Unix tool.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        return int(args.func(args))
    except DatasetIOError as e:
        # Not a config problem: a restart (systemd's Restart=on-failure) recovers.
        print(f"tiffsink: I/O error: {e}", file=sys.stderr)
        return EX_TEMPFAIL
    except RestartableError as e:
        print(f"tiffsink: error (a restart may cure it): {e}", file=sys.stderr)
        return EX_TEMPFAIL
    except TiffsinkError as e:
        print(f"tiffsink: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tiffsink: interrupted", file=sys.stderr)
        return 130
