"""Reading a goal's recorded history: event payloads, their JSON form, state summaries, forks.

Shared by replay, audit, what-if and the run file. Pure: it only reads events and folds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from domain.decisions import Decision
from domain.errors import BatonError
from domain.goal import Goal, GoalEvent
from domain.plan import Plan
from domain.state import GoalState

__all__ = [
    "HistoryError",
    "collect",
    "copy_events",
    "fork_goal",
    "is_observation",
    "jsonable",
    "kind_of",
    "payload",
    "started_event",
    "state_summary",
    "to_json",
]

_IDENTITY = ("originator_id", "originator_version")


class HistoryError(BatonError):
    """A history that cannot be read at all (empty, or not starting with `Started`)."""


def kind_of(event: GoalEvent) -> str:
    return type(event).__name__


def is_observation(event: GoalEvent) -> bool:
    return bool(type(event).observation)


def payload(event: GoalEvent, *, timestamp: bool = True) -> dict[str, Any]:
    """The event's fields as recorded, without its identity (goal id and version)."""
    fields = {k: v for k, v in vars(event).items() if k not in _IDENTITY}
    if not timestamp:
        fields.pop("timestamp", None)
    return fields


def jsonable(value: Any) -> Any:
    """Datetimes as ISO text, tuples as lists: what `json.dumps` can print."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def to_json(event: GoalEvent) -> dict[str, Any]:
    """`{"seq", "kind", "at", ...fields}`: an event as a person or a diff tool reads it."""
    fields = payload(event, timestamp=False)
    fields.pop("originator_topic", None)
    return {
        "seq": event.originator_version,
        "kind": kind_of(event),
        "at": event.timestamp.isoformat(),
        **jsonable(fields),
    }


def started_event(events: Sequence[GoalEvent]) -> Goal.Started:
    if not events:
        raise HistoryError("the history has no events")
    first = events[0]
    if not isinstance(first, Goal.Started) or first.originator_version != 1:
        raise HistoryError(f"the history starts with {kind_of(first)}, not Started")
    return first


def state_summary(state: GoalState) -> dict[str, Any]:
    """The `state` of `baton replay --json`: goal status, each task's status and attempts, usage."""
    return {
        "status": state.status,
        "reason": state.reason,
        "now": state.now.isoformat(),
        "tasks": {
            tid: {"status": task.status, "attempts": task.attempts}
            for tid, task in state.tasks.items()
        },
        "used": {
            "attempts": state.attempts_used,
            "tokens": state.used.tokens,
            "cost_usd": round(state.used.cost_usd, 6),
        },
    }


def collect(goal: Goal) -> list[GoalEvent]:
    """The goal's pending (unsaved) events, taken off it."""
    return cast(list[GoalEvent], list(goal.collect_events()))


def fork_goal(
    events: Sequence[GoalEvent], *, goal_id: str, at: int, now: datetime | None = None
) -> Goal:
    """A new goal whose history is the first `at` events of `events`, its origin in `Started`.

    Events 2..at are recorded again as the same kinds with the same payloads, through the
    aggregate's own `observe`/`record`, so the lifecycle checks run on the copy as well.

    With `now` (when the fork is made), the copied history is re-based to end then: every
    timestamp and recorded time (a retry's `due_at`) moves by the same amount, so the spacing of
    the inherited run is kept, time never runs backwards into what the fork does next, and a
    time budget (`deadline_s`) counts the inherited run's time but not the hours between that
    run and the fork. Recorded texts (reasons) are not rewritten.
    """
    started = started_event(events)
    if not 1 <= at <= len(events):
        raise HistoryError(f"--at {at} is outside 1..{len(events)} (the goal's events)")
    shift = timedelta(0) if now is None else now - events[at - 1].timestamp
    goal = Goal.start(
        goal_id=goal_id,
        plan=Plan.model_validate(started.plan),
        goal_input=started.input,
        concurrency=started.concurrency,
        at=started.timestamp + shift,
        forked_from=started.originator_id,
        forked_at=at,
    )
    copy_events(goal, events[1:at], shift=shift)
    return goal


def copy_events(
    goal: Goal, events: Sequence[GoalEvent], *, shift: timedelta = timedelta(0)
) -> None:
    """Record `events` again on `goal`: observations as observed, decisions as decided."""
    for event in events:
        fields = {
            key: value + shift if isinstance(value, datetime) else value
            for key, value in payload(event, timestamp=False).items()
        }
        if is_observation(event):
            goal.observe(kind_of(event), at=event.timestamp + shift, **fields)
        else:
            goal.record(Decision(kind_of(event), fields))
