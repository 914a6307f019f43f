"""The attempt timeline of a goal, from its events: attempts, backoffs and human waits as bars.

Shared by the web view's Gantt chart and `baton timeline` (matplotlib). Times are the events'
own; a bar still open at the end (an attempt without an outcome, a human not yet answered) ends
at the last event, or at `now` when the caller passes the time of looking at a goal that has not
ended, marked `open`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from baton.domain.decisions import GOAL_ENDINGS
from baton.domain.goal import GoalEvent
from baton.domain.history import kind_of, started_event

__all__ = ["Bar", "Mark", "Timeline", "timeline_of"]

BarKind = Literal["attempt", "backoff", "human"]
# ok: accepted; error: raised, timed out, rejected or interrupted; open: no outcome at the end
Outcome = Literal["ok", "error", "open", "wait"]

# Moments of the whole goal drawn across every row: a process taking it up, one asked to stop
# while an unsafe attempt ran, and the goal's end.
MARKS = {"RunResumed": "resumed", "StopRequested": "stop requested"}

# Decisions that hand a task to a human, and how its wait is labelled (baton.domain.gates).
ESCALATIONS = {
    "TaskEscalated": "waiting for a human",
    "ClarificationRequested": "waiting for an answer",
    "ApprovalRequested": "waiting for approval",
}


@dataclass
class Bar:
    task: str
    kind: BarKind
    start: datetime
    end: datetime
    label: str
    outcome: Outcome = "open"
    attempt: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class Mark:
    at: datetime
    kind: str  # the event's class name
    label: str


@dataclass
class Timeline:
    goal_id: str
    started_at: datetime
    ended_at: datetime
    tasks: list[str]  # rows, in plan order
    bars: list[Bar] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)  # goal-wide moments, in event order

    def offset_s(self, at: datetime) -> float:
        return (at - self.started_at).total_seconds()

    @property
    def span_s(self) -> float:
        return max(self.offset_s(self.ended_at), 1e-6)


def timeline_of(events: Sequence[GoalEvent], *, now: datetime | None = None) -> Timeline:
    """Every attempt (dispatch → outcome), backoff (retry scheduled → ready again) and human
    wait (escalated → resolved) of the goal, in event order."""
    started = started_event(events)
    order = [spec["id"] for spec in started.plan.get("tasks", [])]
    last = events[-1].timestamp
    if now is not None and now > last and not any(kind_of(e) in GOAL_ENDINGS for e in events[-3:]):
        last = now  # still running or waiting: open bars reach the present
    line = Timeline(started.originator_id, started.timestamp, last, order)
    known = set(order)
    attempts: dict[tuple[str, int], Bar] = {}
    open_waits: dict[str, Bar] = {}
    for event in events[1:]:
        kind, fields, at = kind_of(event), vars(event), event.timestamp
        task: Any = fields.get("task")
        bar: Bar | None
        if task is not None and task not in known:
            order.append(task)  # tasks added at run time
            known.add(task)
        if kind == "TaskDispatched":
            # Rules 3: a dispatch that holds its readiness ends a backoff, as a TaskReady does
            # (a human's wait was ended by the human's decision).
            wait = open_waits.pop(task, None) if fields.get("ready") is not None else None
            if wait is not None:
                wait.end = at
            bar = Bar(task, "attempt", at, last, f"{task} #{fields['attempt']}",
                      attempt=fields["attempt"])
            attempts[(task, fields["attempt"])] = bar
            line.bars.append(bar)
        elif kind in ("AgentReturned", "AgentRaised", "AgentTimedOut"):
            bar = attempts.get((task, fields["attempt"]))
            if bar is None:
                continue
            bar.end = at
            if kind == "AgentRaised":
                bar.outcome, bar.detail = "error", f"{fields['error_type']}: {fields['message']}"
            elif kind == "AgentTimedOut":
                bar.outcome, bar.detail = "error", f"timed out after {fields['timeout_s']:g}s"
            elif fields.get("output_error"):
                bar.outcome, bar.detail = "error", fields["output_error"]
        elif kind in ("OutputAccepted", "OutputRejected", "AttemptInterrupted"):
            bar = attempts.get((task, fields["attempt"]))
            if bar is None:
                continue
            if bar.outcome == "open" or kind != "OutputAccepted":
                bar.outcome = "ok" if kind == "OutputAccepted" else "error"
                bar.detail = bar.detail or fields["reason"]
            if kind == "AttemptInterrupted":
                bar.end = at
        elif kind == "RetryScheduled":
            bar = Bar(task, "backoff", at, fields["due_at"], f"backoff {fields['delay_s']:.3g}s",
                      outcome="wait", detail=fields["reason"])
            open_waits[task] = bar
            line.bars.append(bar)
        elif kind in ESCALATIONS:
            bar = Bar(task, "human", at, last, ESCALATIONS[kind], outcome="open",
                      detail=fields["reason"])
            open_waits[task] = bar
            line.bars.append(bar)
        elif kind in ("TaskReady", "HumanResolved", "HumanAnswered", "TaskCancelled",
                      "TaskAbandoned"):
            bar = open_waits.pop(task, None) if task is not None else None
            if bar is not None:
                bar.end = at
                if bar.kind == "human":
                    bar.outcome = "wait"
                    if kind == "HumanResolved":
                        bar.label = f"{fields['by']}: {fields['action']}"
                    elif kind == "HumanAnswered":
                        bar.label = f"{fields['by']}: answered"
        elif kind in MARKS:
            line.marks.append(Mark(at, kind, MARKS[kind]))
        elif kind in GOAL_ENDINGS:
            line.marks.append(Mark(at, kind, _ending_label(kind)))
    return line


def _ending_label(kind: str) -> str:
    """`GoalCompleted` → `goal completed`."""
    return "goal " + kind.removeprefix("Goal").lower()
