"""The command line: `tiffsink run | ingest | verify | status | ...` (entry point `main`)."""

import os

# Before numpy loads: tiffsink does no linear algebra, and OpenBLAS would otherwise start
# a thread per core in every process (command, fork server), each spinning ~0.1 s of CPU
# that the decoding workers need on a small machine. A value the user set is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .main import main

__all__ = ["main"]
