"""Reading a goal's recorded history: event payloads, their JSON form, state summaries, forks.

Shared by replay, audit, what-if and the run file. Pure: it only reads events and folds them.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from baton.domain.decisions import decision_of
from baton.domain.errors import BatonError, PlanError
from baton.domain.expansion import is_added
from baton.domain.goal import Goal, GoalEvent
from baton.domain.plan import Plan, load_plan
from baton.domain.state import RULES, GoalState

__all__ = [
    "OUTCOME_KINDS",
    "HistoryError",
    "check_at",
    "check_history",
    "collect",
    "copy_events",
    "decided_at_start",
    "fold",
    "fork_goal",
    "inherited_events",
    "is_observation",
    "jsonable",
    "kind_of",
    "payload",
    "payload_problems",
    "started_event",
    "state_summary",
    "to_json",
]

_IDENTITY = ("originator_id", "originator_version")

# The observations that end an agent call: what it returned, raised, or that it ran past its
# timeout. One table for every reader (re-execution, what-if), so they cannot disagree.
OUTCOME_KINDS = ("AgentReturned", "AgentRaised", "AgentTimedOut")


class HistoryError(BatonError):
    """A history that cannot be read at all (empty, or not starting with `Started`)."""


def kind_of(event: GoalEvent) -> str:
    return type(event).__name__


def is_observation(event: GoalEvent) -> bool:
    return bool(type(event).observation)


def decided_at_start(events: Sequence[GoalEvent]) -> bool:
    """Whether decisions were taken right after `Started`: `run` and `fork` settle the goal as
    they start it; `submit` stores `Started` alone, and whoever drives the goal later (a worker,
    `resume`) records its own observation first. A re-decision of the history must do the same,
    or it decides where nobody did."""
    return len(events) > 1 and not is_observation(events[1])


def inherited_events(started: Any, limit: int) -> int:
    """How many of a fork's first events (of `limit`) are its parent's, copied without being
    decided again. None when it copied only its `Started`: such a fork is decided from the
    start, as any goal (a worker's first decisions follow no observation), and taking its
    first decision for the end of the inherited part reported a divergence that was none."""
    inherited = min(started.forked_at or 0, limit)
    return 0 if inherited == 1 else inherited


def payload(event: GoalEvent, *, timestamp: bool = True) -> dict[str, Any]:
    """The event's fields as recorded, without its identity (goal id and version)."""
    fields = {k: v for k, v in vars(event).items() if k not in _IDENTITY}
    if not timestamp:
        fields.pop("timestamp", None)
    return fields


def jsonable(value: Any) -> Any:
    """Datetimes as ISO text, tuples as lists, mappings in key order: what `json.dumps` can
    print, and the same for the same history from any store (PostgreSQL's JSONB hands keys
    back in its own order, SQLite in the order they were written)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
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


class _Figures(BaseModel):
    """What `usage` and `reserved` hold when they are set (the runner records both numbers)."""

    model_config = ConfigDict(strict=True)
    tokens: int
    cost_usd: float


_FIGURES = ("usage", "reserved")


@cache
def _field_types(event_class: type[GoalEvent]) -> dict[str, TypeAdapter[Any]]:
    """Each payload field's declared type, checked strictly (no "3" for an int)."""
    hints = typing.get_type_hints(event_class)
    strict = ConfigDict(strict=True)
    return {
        field.name: (
            TypeAdapter(_Figures | None)
            if field.name in _FIGURES
            else TypeAdapter(hints[field.name], config=strict)
        )
        for field in dataclasses.fields(event_class)
        if field.name not in _IDENTITY
    }


def payload_problems(event_class: type[GoalEvent], fields: Mapping[str, Any]) -> list[str]:
    """Fields whose value is not of the type the event class declares (one line each)."""
    problems = []
    for name, field_type in _field_types(event_class).items():
        if name not in fields:
            continue
        try:
            field_type.validate_python(fields[name])
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in (name, *error["loc"]))
            problems.append(f"{where}: {error['msg']}")
    return problems


def check_history(events: Sequence[GoalEvent]) -> Plan:
    """The recorded plan, after checking what a history read from outside must hold together:
    a valid plan in `Started`, a fork origin inside the history, and every event's task in the
    plan. HistoryError names the event otherwise. (Whether the events replay is replay's job.)"""
    started = started_event(events)
    try:
        plan = load_plan(started.plan, source="the recorded plan")
    except PlanError as exc:
        raise HistoryError(f"event 1 (Started): {exc}") from None
    if not 1 <= started.rules <= RULES:
        raise HistoryError(
            f"event 1 (Started): decided under rules {started.rules}; this Baton knows rules "
            f"1..{RULES} (a newer Baton recorded it?)"
        )
    forked_from, forked_at = started.forked_from, started.forked_at
    if (forked_from is None) != (forked_at is None):
        raise HistoryError("event 1 (Started): forked_from and forked_at go together")
    if forked_at is not None and not 1 <= forked_at <= len(events):
        raise HistoryError(
            f"event 1 (Started): forked_at {forked_at} is outside 1..{len(events)}"
        )
    for event in events:
        task = getattr(event, "task", None)
        if task is not None and task not in plan.task_map and not is_added(plan, task):
            raise HistoryError(
                f"event {event.originator_version} ({kind_of(event)}): "
                f"no task {task!r} in the recorded plan"
            )
    return plan


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


def fold(events: Sequence[GoalEvent]) -> Goal:
    """The goal its (non-empty) events make, applied in order as the store applies them."""
    goal: Goal | None = None
    for event in events:
        goal = cast(Goal | None, event.mutate(goal))
    assert goal is not None, "no events to fold"
    return goal


def collect(goal: Goal) -> list[GoalEvent]:
    """The goal's pending (unsaved) events, taken off it."""
    return cast(list[GoalEvent], list(goal.collect_events()))


def check_at(at: object, events: Sequence[GoalEvent]) -> None:
    """`at` (fork, replay): the number of an event of `events`, 1-based."""
    if not isinstance(at, int) or isinstance(at, bool):
        raise HistoryError(
            f"at {at!r}: expected a whole number of events, 1..{len(events)}, not "
            f"{type(at).__name__}"
        )
    if not 1 <= at <= len(events):
        raise HistoryError(f"at {at} is outside 1..{len(events)} (the goal's events)")


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
    check_at(at, events)
    shift = timedelta(0) if now is None else now - events[at - 1].timestamp
    goal = Goal.start(
        goal_id=goal_id,
        plan=Plan.model_validate(started.plan),
        goal_input=started.input,
        concurrency=started.concurrency,
        at=started.timestamp + shift,
        forked_from=started.originator_id,
        forked_at=at,
        schemas=started.schemas,
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
            goal.record(decision_of(kind_of(event), fields))
