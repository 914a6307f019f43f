"""What a running attempt has spent so far, readable by the runner while the attempt runs.

An attempt reports its usage when it ends (returned, or carried by what it raised). One that
runs past its timeout never ends in time: the runner abandons it and records `AgentTimedOut`
at once. Its model requests before the one that hung were paid for all the same, so the call
pool hands each call a `Spending` (through a context variable, so agents need no new
parameter) and an agent able to say what it has spent (the LLM adapter) registers a reader on
it; the runner reads it when it abandons the attempt and records the figure with the timeout.

The runner also puts on it what the goal's `max_cost_usd` leaves this attempt (`cost_left_usd`),
so an agent that makes several requests stops sending them once its cost reaches it.

Thread-safety: the reader runs on the orchestrator's thread while the attempt runs on another
(a worker thread, or the event loop's). It must only read what the attempt has finished
writing: the LLM adapter's reader copies the run's message list (one atomic operation) and
reads completed responses only. A reader that raises reads as "nothing known" (None).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["Spending", "current_spending", "spending_of"]

Reader = Callable[[], dict[str, Any] | None]


class Spending:
    """One attempt's running spend: a reader the agent registers, read by the runner."""

    def __init__(self, *, cost_left_usd: float | None = None) -> None:
        self.cost_left_usd = cost_left_usd  # what max_cost_usd leaves the attempt (None: no cap)
        self._lock = threading.Lock()
        self._reader: Reader | None = None

    def report(self, reader: Reader) -> None:
        """Register how to read what the attempt has spent so far (the agent's side)."""
        with self._lock:
            self._reader = reader

    def so_far(self) -> dict[str, Any] | None:
        """What the attempt has spent so far, as a usage report; None when nothing is known."""
        with self._lock:
            reader = self._reader
        if reader is None:
            return None
        try:
            return reader()
        except Exception:  # a reader must never take the orchestrator down
            return None


_CURRENT: ContextVar[Spending | None] = ContextVar("baton_attempt_spending", default=None)


def current_spending() -> Spending | None:
    """The running attempt's `Spending` (None outside a call the pool runs)."""
    return _CURRENT.get()


@contextmanager
def spending_of(spending: Spending) -> Iterator[Spending]:
    """Make `spending` the current attempt's for the code run inside (one thread or task)."""
    token = _CURRENT.set(spending)
    try:
        yield spending
    finally:
        _CURRENT.reset(token)
