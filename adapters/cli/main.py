"""`baton`: the command line of CONTRACT.md §3.

Exit codes: 0 completed / succeeded, 1 goal failed or cancelled (or replay diverged), 2 invalid
usage, plan, input or store (one line on stderr, no traceback), 3 the goal waits for a human.
Each command lives in `baton.cli.commands`; this module only builds the parser and maps errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from baton.cli.commands import COMMANDS
from baton.domain.errors import BatonError

__all__ = ["EXIT_DIVERGED", "EXIT_FAILED", "EXIT_INVALID", "EXIT_OK", "EXIT_WAITING", "main"]

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_WAITING = 0, 1, 2, 3
EXIT_DIVERGED = EXIT_FAILED
EXIT_INTERNAL = 70  # a bug in Baton itself (BSD EX_SOFTWARE); BATON_DEBUG=1 shows the traceback

# Commands that append events: the read models are brought up to date before they exit, so
# `baton status` right after shows what they did.
WRITING_COMMANDS = frozenset({"run", "resume", "resolve", "cancel", "fork", "import", "submit"})


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line that points at --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="baton",
        description="A thin, deterministic, event-sourced orchestrator for multi-agent systems.",
    )
    parser.add_argument(
        "--store",
        default=None,
        help="sqlite:///path.db or postgresql://user:pass@host:port/db "
        "(default: $BATON_STORE, else sqlite:///baton.db)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        try:
            code: int = args.func(args)
        finally:
            if args.command in WRITING_COMMANDS:
                _refresh_read_models(args)
    except BatonError as exc:
        print(f"baton: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("baton: interrupted; `baton resume GOAL` continues from the events", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("BATON_DEBUG"):  # read directly: settings themselves may be broken
            raise
        detail = " ".join(str(exc).split())
        print(
            f"baton: internal error: {type(exc).__name__}: {detail} (BATON_DEBUG=1 for details)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return code


def _refresh_read_models(args: argparse.Namespace) -> None:
    """Catch the read models up with what the command wrote; a failure here is a warning, never
    a changed exit code: the events are stored, and any later catch-up applies them."""
    store = getattr(args, "opened_store", None)
    if store is None:
        return
    from baton.readmodels.reading import refresh, warn_refresh_failed

    try:
        refresh(store)
    except Exception as exc:
        if os.environ.get("BATON_DEBUG"):
            raise
        warn_refresh_failed(exc)


if __name__ == "__main__":
    sys.exit(main())
