"""Who watches a run: the runner tells an observer what it saved and lets it wrap agent calls.

The hook is all the runner knows of live progress and live telemetry: after every save it
passes the events just stored; before an agent is called, the observer may wrap the callable
(telemetry uses this to run the agent inside its attempt span). Observers never decide anything
and must not raise (a failing display must not stop a run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from baton.domain.goal import Goal, GoalEvent

__all__ = ["Observers", "RunObserver", "with_live_telemetry"]


class RunObserver(Protocol):
    def saved(self, goal: Goal, events: Sequence[GoalEvent]) -> None:
        """`events` were just stored, in order; `goal` is the state after them."""

    def calling(
        self, goal_id: str, task: str, attempt: int, agent: Callable[..., Any]
    ) -> Callable[..., Any]:
        """The callable to run for this attempt (`agent` itself, or a wrapper of it)."""


class Observers:
    """Several observers as one, told in order."""

    def __init__(self, *observers: RunObserver) -> None:
        self.observers = observers

    def saved(self, goal: Goal, events: Sequence[GoalEvent]) -> None:
        for observer in self.observers:
            observer.saved(goal, events)

    def calling(
        self, goal_id: str, task: str, attempt: int, agent: Callable[..., Any]
    ) -> Callable[..., Any]:
        for observer in self.observers:
            agent = observer.calling(goal_id, task, attempt, agent)
        return agent


def with_live_telemetry(observer: RunObserver | None, store: Any) -> RunObserver | None:
    """`observer`, plus live span export when the OTEL_* settings ask for it."""
    from baton.telemetry.live import live_telemetry

    telemetry = live_telemetry(store)
    if telemetry is None:
        return observer
    return telemetry if observer is None else Observers(observer, telemetry)
