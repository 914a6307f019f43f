"""A standard output that a reader may close: `baton export G | head -1`.

When the reader goes away, the rest of the output is discarded and the command carries on to
its own end, so its exit code still says what happened (replay ok or diverged, the goal's
status) rather than a BrokenPipeError turning into "internal error" or "diverged".
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["tolerate_closed_stdout"]


class _ReaderMayClose:
    """Writes through to `stream` until its reader closes the pipe; then nowhere, quietly."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._closed = False

    def write(self, text: str) -> int:
        if not self._closed:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._discard()
        return len(text)

    def flush(self) -> None:
        if not self._closed:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._discard()

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


@contextlib.contextmanager
def tolerate_closed_stdout() -> Iterator[None]:
    original = sys.stdout
    sys.stdout = _ReaderMayClose(original)
    try:
        yield
    finally:
        sys.stdout = original
