"""`baton`: the command line (docs/reference.md, "Command line").

Exit codes are in `baton.cli.exits`. Each command lives in `baton.cli.commands`, a thin layer
over the same service as the Python API; this module only builds the parser and maps errors.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from baton import __version__
from baton.cli import exits
from baton.cli.commands import COMMANDS
from baton.cli.pipes import tolerate_closed_stdout
from baton.domain.errors import BatonError, BatonWarning, one_line
from baton.runtime.service import catch_up_read_models
from baton.store.eventstore import StoreError

__all__ = ["main"]

# Commands that append events: the read models are brought up to date before they exit, so
# `baton status` right after shows what they did.
WRITING_COMMANDS = frozenset(
    {"run", "resume", "resolve", "answer", "cancel", "fork", "import", "submit"}
)


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line that points at --help."""

    def error(self, message: str) -> NoReturn:
        unrecognized = message.partition("unrecognized arguments:")[2].split()
        if any(arg == "--store" or arg.startswith("--store=") for arg in unrecognized):
            # The order most CLIs accept; argparse only ever says it did not recognise it.
            message += ("; --store is a global option: give it before the command "
                        "(baton --store URL COMMAND …)")
        self.exit(exits.INVALID, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    parser.add_argument("--version", action="version", version=f"baton {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for register in COMMANDS:
        register(sub)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], *args: Any,
                  **kwargs: Any) -> None:
    """Baton's own warnings as one `baton: warning:` line; any other as Python prints it."""
    if issubclass(category, BatonWarning):
        print(f"baton: warning: {one_line(str(message))}", file=sys.stderr)
    else:
        _PYTHON_SHOWWARNING(message, category, *args, **kwargs)


_PYTHON_SHOWWARNING = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = sys.argv[1:] if argv is None else list(argv)
    for index, argument in enumerate(arguments, start=1):
        # A process's own argv cannot hold one (C strings), but `main([...])` can, and no path,
        # URL or goal id may: refused here, before any open() raises a bare ValueError.
        if "\x00" in argument:
            parser.error(f"argument {index} ({argument!r}) contains a NUL byte")
    args = parser.parse_args(arguments)
    try:
        store_failed = False
        try:
            with tolerate_closed_stdout(), warnings.catch_warnings():
                warnings.showwarning = _show_warning
                warnings.simplefilter("always", BatonWarning)  # every run says it
                code: int = args.func(args)
        except StoreError:
            # The store failed the command (down, refusing, locked): a catch-up now would wait
            # for it as long again, only to warn that "the events are stored" above the error
            # saying the last save was not. Any later catch-up applies what was stored.
            store_failed = True
            raise
        finally:
            if args.command in WRITING_COMMANDS and not store_failed:
                _refresh_read_models(args)
    except BatonError as exc:
        print(f"baton: error: {one_line(str(exc))}", file=sys.stderr)
        return exits.INVALID
    except KeyboardInterrupt:
        print("baton: interrupted; `baton resume GOAL` continues from the events", file=sys.stderr)
        return exits.INTERRUPTED
    except Exception as exc:
        if os.environ.get("BATON_DEBUG"):  # read directly: settings themselves may be broken
            raise
        detail = " ".join(str(exc).split())
        print(
            f"baton: internal error: {type(exc).__name__}: {detail} (BATON_DEBUG=1 for details)",
            file=sys.stderr,
        )
        return exits.INTERNAL
    return code


def _refresh_read_models(args: argparse.Namespace) -> None:
    """Catch the read models up with what the command wrote (the store is opened by the command
    itself, after its arguments checked out, so an invalid plan never creates a store)."""
    store = getattr(args, "opened_store", None)
    if store is None or not store.is_open:  # refused before it wrote: create nothing now
        return
    from baton.readmodels.reading import warn_refresh_failed

    catch_up_read_models(store, warn=warn_refresh_failed)


if __name__ == "__main__":
    sys.exit(main())
