"""The command line: `tiffsink run | ingest | verify | status | ...` (entry point `main`)."""

from .main import main

__all__ = ["main"]
