"""A standard output that a reader may close: `baton export G | head -1`.

When the reader goes away, the rest of the output is discarded and the command carries on to
its own end, so its exit code still says what happened (replay ok or diverged, the goal's
status) rather than a BrokenPipeError turning into "internal error" or "diverged". A stdout
closed before Baton started (`baton status >&-`, where Python's `sys.stdout` is None) has no
reader either and is treated the same. A write that fails otherwise (`baton export G >
/dev/full`) loses output someone wanted: one line naming standard output, exit 2, never an
"internal error" or a failure blamed on the store the command was reading when it printed.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from baton.domain.errors import BatonError

__all__ = ["OutputError", "tolerate_closed_stdout"]


class OutputError(BatonError):
    """Standard output refused a write for another reason than a reader gone (a full disk)."""


class _ReaderMayClose:
    """Writes through to `stream` until its reader closes the pipe; then nowhere, quietly."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream if stream is not None else open(os.devnull, "w")  # noqa: SIM115
        self._closed = stream is None

    def write(self, text: str) -> int:
        if not self._closed:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._discard()
            except OSError as exc:
                raise _output_error(exc) from None
        return len(text)

    def flush(self) -> None:
        if not self._closed:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._discard()
            except OSError as exc:
                raise _output_error(exc) from None

    def _discard(self) -> None:
        self._closed = True
        # Python's own advice (signal docs, "Note on SIGPIPE"): point the descriptor at devnull,
        # so the interpreter's final flush of what is still buffered cannot fail either.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _output_error(exc: OSError) -> OutputError:
    return OutputError(f"cannot write to standard output: {exc.strerror or exc}")


@contextlib.contextmanager
def tolerate_closed_stdout() -> Iterator[None]:
    original = sys.stdout
    sys.stdout = wrapped = _ReaderMayClose(original)
    try:
        yield
        # what is still buffered fails here, inside the command, not in the interpreter's
        # final flush (a traceback-less "Exception ignored" and exit 120)
        wrapped.flush()
    finally:
        sys.stdout = original
