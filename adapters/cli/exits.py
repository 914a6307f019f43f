"""The command line's exit codes (docs/reference.md, "Exit codes"), in this one module.

`0` completed (or the command succeeded), `1` the goal failed or was cancelled, or replay
diverged, `2` invalid usage, plan, input or store (one line on stderr, no traceback), `3` the
goal waits for a human. `70` is a bug in Baton itself (BSD `EX_SOFTWARE`; `BATON_DEBUG=1` shows
the traceback) and `130` an interrupted command (the shell's 128 + SIGINT).
"""

from __future__ import annotations

__all__ = [
    "FAILED",
    "INTERNAL",
    "INTERRUPTED",
    "INVALID",
    "OK",
    "WAITING",
    "for_outcome",
    "for_status",
]

OK = 0
FAILED = 1
INVALID = 2
WAITING = 3
INTERNAL = 70
INTERRUPTED = 130

_BY_STATUS = {"completed": OK, "running": OK, "failed": FAILED, "cancelled": FAILED,
              "waiting": WAITING}


def for_status(status: str) -> int:
    """A goal's exit code from its status (`running`: a goal left to a worker is not a failure)."""
    return _BY_STATUS.get(status, FAILED)


def for_outcome(ok: bool) -> int:
    """Replay and what-if: 0 when every decision agreed, 1 at a divergence."""
    return OK if ok else FAILED
