"""`baton`, the command line (docs/reference.md, "Command line"): a thin layer over the service."""

from baton.cli.main import main

__all__ = ["main"]
