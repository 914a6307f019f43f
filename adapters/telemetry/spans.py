"""Spans from the log: a goal's events projected into goal → task → attempt spans.

A projection, like the read models: ids come from hashes of the goal id, task and attempt, and
times from the events' own timestamps, so the same events (stored, or read from a run file on
another machine) always give the same trace. No OpenTelemetry import here: `export` turns these
records into the SDK's spans, and this module is what the tests and the web view can read too.

Which span gets which event: decisions about an attempt (dispatched, output accepted or rejected,
retry scheduled, interrupted) are events of the attempt span; other task decisions and a human's
resolution are events of the task span; goal decisions and a cancel request, of the goal span.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from baton.domain.decisions import GOAL_ENDINGS
from baton.domain.goal import GoalEvent
from baton.domain.history import jsonable, kind_of
from baton.domain.state import parent_of

__all__ = [
    "SpanEvent",
    "SpanProjector",
    "SpanRecord",
    "attempt_span_id",
    "goal_span_id",
    "goal_spans",
    "task_span_id",
    "trace_id",
]

_ATTEMPT_DECISIONS = frozenset(
    {"TaskDispatched", "OutputAccepted", "OutputRejected", "RetryScheduled", "AttemptInterrupted"}
)
_ATTEMPT_OBSERVATIONS = frozenset({"AgentReturned", "AgentRaised", "AgentTimedOut"})
_TASK_ENDS = frozenset(
    {"OutputAccepted", "TaskFailed", "TaskAbandoned", "TaskSkipped", "TaskCancelled"}
)
_GOAL_DECISIONS = GOAL_ENDINGS | {"GoalSuspended", "GoalResumed"}
# What an attempt's concluding decision says about it: None is not an error.
_ATTEMPT_ERRORS = {"OutputRejected", "AttemptInterrupted"}


def _hash_int(text: str, bits: int) -> int:
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[: bits // 8], "big")
    return value or 1  # zero is OpenTelemetry's "invalid id"


def trace_id(goal_id: str) -> int:
    """The goal's 128-bit trace id, derived from its id."""
    return _hash_int(f"baton-trace:{goal_id}", 128)


def goal_span_id(goal_id: str) -> int:
    return _hash_int(f"baton-span:{goal_id}", 64)


def task_span_id(goal_id: str, task: str) -> int:
    return _hash_int(f"baton-span:{goal_id}/{task}", 64)


def attempt_span_id(goal_id: str, task: str, attempt: int) -> int:
    return _hash_int(f"baton-span:{goal_id}/{task}#{attempt}", 64)


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000) * 1000


@dataclass
class SpanEvent:
    name: str
    at_ns: int
    attributes: dict[str, Any]


@dataclass
class SpanRecord:
    """One span as the events describe it; `end_ns` None while it is still open."""

    name: str
    span_id: int
    parent_id: int | None
    start_ns: int
    end_ns: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    error: str | None = None  # set: the span's status is ERROR with this description
    ok: bool = False  # set: the span's status is OK


def _attr(value: Any) -> Any:
    """An attribute value OpenTelemetry accepts: str, bool, int, float (others as text)."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    import json

    return json.dumps(jsonable(value), separators=(",", ":"))


def _decision_event(event: GoalEvent, kind: str) -> SpanEvent:
    fields = vars(event)
    attributes: dict[str, Any] = {"baton.seq": event.originator_version}
    for key in ("rule", "reason", "attempt", "task", "error", "failure", "budget", "by",
                "action", "because", "delay_s", "errors"):
        value = fields.get(key)
        if value is not None:
            attributes[f"baton.{key}"] = _attr(value)
    ready = fields.get("ready")
    if ready is not None:  # rules 3: a dispatch that made its task ready says why
        attributes["baton.ready.rule"] = _attr(ready["rule"])
        attributes["baton.ready.reason"] = _attr(ready["reason"])
    return SpanEvent(kind, _ns(event.timestamp), attributes)


class SpanProjector:
    """Folds events, in order, into spans; `take_closed()` hands each span out once it ends."""

    def __init__(self) -> None:
        self.goal_id: str | None = None
        self.spans: dict[int, SpanRecord] = {}
        self._agents: dict[str, str] = {}
        self._side_effects: dict[str, str] = {}
        self._handed_out: set[int] = set()
        self.last_ns = 0

    # --- feeding ---

    def feed(self, events: Iterable[GoalEvent]) -> None:
        for event in events:
            self._apply(event)

    def _apply(self, event: GoalEvent) -> None:
        kind = kind_of(event)
        at = _ns(event.timestamp)
        self.last_ns = max(self.last_ns, at)
        fields = vars(event)
        if kind == "Started":
            self._start(event, at)
            return
        assert self.goal_id is not None, "a history starts with Started"
        task = fields.get("task")
        if kind == "PlanExtended":  # the tasks a planner added: agents from its fragment
            for task_id, spec in zip(fields["added"], fields["fragment"]["tasks"], strict=True):
                self._agents[task_id] = spec["agent"]
                self._side_effects[task_id] = spec.get("side_effects", "none")
        elif kind == "MapExpanded":  # a map's instances: its agent and side effects
            map_id = str(task)
            for index in range(fields["width"]):
                self._agents[f"{map_id}[{index}]"] = self._agents[map_id]
                self._side_effects[f"{map_id}[{index}]"] = self._side_effects[map_id]
        if kind in _ATTEMPT_OBSERVATIONS:
            self._observed(event, kind, at)
        elif kind in _ATTEMPT_DECISIONS:
            self._attempt_decision(event, kind, at)
        elif task is not None and task in self._agents and kind not in _GOAL_DECISIONS:
            # (GoalFailed names the task that failed it, but ends the goal: a goal decision.)
            self._task_decision(event, kind, at)
        else:
            goal = self.spans[goal_span_id(self.goal_id)]
            goal.events.append(_decision_event(event, kind))
            if kind in GOAL_ENDINGS:
                goal.end_ns = at
                goal.attributes["baton.status"] = kind.removeprefix("Goal").lower()
                goal.attributes["baton.rule"] = fields["rule"]
                goal.attributes["baton.reason"] = fields["reason"]
                if kind == "GoalCompleted":
                    goal.ok = True
                else:
                    goal.error = fields["reason"]
            elif kind == "GoalSuspended":
                goal.attributes["baton.status"] = "waiting"
            elif kind == "GoalResumed":
                goal.attributes["baton.status"] = "running"

    def _start(self, event: GoalEvent, at: int) -> None:
        fields = vars(event)
        self.goal_id = goal_id = event.originator_id
        plan = fields["plan"]
        for spec in plan.get("tasks", []):
            self._agents[spec["id"]] = spec["agent"]
            self._side_effects[spec["id"]] = spec.get("side_effects", "none")
        attributes: dict[str, Any] = {
            "baton.goal.id": goal_id,
            "baton.plan": plan.get("name", ""),
            "baton.status": "running",
        }
        if fields.get("forked_from"):
            attributes["baton.forked_from"] = fields["forked_from"]
            attributes["baton.forked_at"] = fields["forked_at"]
        name = f"goal {plan.get('name', goal_id)}"
        self.spans[goal_span_id(goal_id)] = SpanRecord(name, goal_span_id(goal_id), None, at,
                                                       attributes=attributes)

    def _task_span(self, task: str, at: int) -> SpanRecord:
        assert self.goal_id is not None
        span_id = task_span_id(self.goal_id, task)
        span = self.spans.get(span_id)
        if span is None:
            # A task a planner or a map added is a child of the task that added it.
            parent = parent_of(task)
            parent_id = (goal_span_id(self.goal_id) if parent is None
                         else self._task_span(parent, at).span_id)
            span = SpanRecord(
                f"task {task}", span_id, parent_id, at,
                attributes={
                    "baton.task": task,
                    "gen_ai.agent.name": self._agents[task],
                    "baton.side_effects": self._side_effects[task],
                    "baton.attempts": 0,
                },
            )
            self.spans[span_id] = span
        return span

    def _attempt_span(self, task: str, attempt: int, at: int) -> SpanRecord:
        assert self.goal_id is not None
        span_id = attempt_span_id(self.goal_id, task, attempt)
        span = self.spans.get(span_id)
        if span is None:
            agent = self._agents[task]
            parent = self._task_span(task, at)
            parent.attributes["baton.attempts"] = max(parent.attributes["baton.attempts"], attempt)
            span = SpanRecord(
                f"invoke_agent {agent}", span_id, parent.span_id, at,
                attributes={
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": agent,
                    "baton.task": task,
                    "baton.attempt": attempt,
                    "baton.side_effects": self._side_effects[task],
                },
            )
            self.spans[span_id] = span
        return span

    def _observed(self, event: GoalEvent, kind: str, at: int) -> None:
        fields = vars(event)
        span = self._attempt_span(fields["task"], fields["attempt"], at)
        span.end_ns = at if span.end_ns is None else span.end_ns
        if fields.get("duration_ms") is not None:
            span.attributes["baton.duration_ms"] = fields["duration_ms"]
        usage = fields.get("usage") or {}
        for key, name in (("input_tokens", "gen_ai.usage.input_tokens"),
                          ("output_tokens", "gen_ai.usage.output_tokens"),
                          ("request_model", "gen_ai.request.model"),  # asked for
                          ("model", "gen_ai.response.model"),  # answered
                          ("tokens", "baton.usage.tokens"),
                          ("cost_usd", "baton.usage.cost_usd")):
            if usage.get(key) is not None:
                span.attributes[name] = usage[key]
        if kind == "AgentRaised":
            span.error = f"{fields['error_type']}: {fields['message']}"
            span.attributes["error.type"] = fields["error_type"]
        elif kind == "AgentTimedOut":
            span.error = f"no result within {fields['timeout_s']:g}s"
            span.attributes["error.type"] = "timeout"
        elif fields.get("output_error"):
            span.error = fields["output_error"]

    def _attempt_decision(self, event: GoalEvent, kind: str, at: int) -> None:
        fields = vars(event)
        task = fields["task"]
        span = self._attempt_span(task, fields["attempt"], at)
        span.events.append(_decision_event(event, kind))
        if kind == "TaskDispatched" and fields.get("ready") is not None:
            self._reopened(task)  # rules 3: its readiness is recorded with the dispatch
        if kind != "TaskDispatched":
            span.end_ns = at if span.end_ns is None else span.end_ns
            span.attributes["baton.rule"] = fields["rule"]
            span.attributes["baton.reason"] = fields["reason"]
            if kind == "OutputAccepted" and span.error is None:
                span.ok = True
            elif kind in _ATTEMPT_ERRORS or kind == "RetryScheduled":
                span.error = span.error or fields["reason"]
                span.ok = False
        else:
            span.attributes["baton.idempotency_key"] = fields["idempotency_key"]
        if kind == "OutputAccepted":
            self._end_task(task, event, kind, at, ok=True)

    def _task_decision(self, event: GoalEvent, kind: str, at: int) -> None:
        fields = vars(event)
        span = self._task_span(fields["task"], at)
        span.events.append(_decision_event(event, kind))
        if kind in _TASK_ENDS:
            self._end_task(fields["task"], event, kind, at, ok=False)
        elif kind in ("TaskEscalated", "ClarificationRequested", "ApprovalRequested"):
            span.attributes["baton.status"] = "escalated"
        elif kind == "TaskReady":
            self._reopened(fields["task"])

    def _reopened(self, task: str) -> None:
        """A task made ready again after its span ended (a human retried it) is open again."""
        assert self.goal_id is not None
        span = self.spans.get(task_span_id(self.goal_id, task))
        if span is not None and span.end_ns is not None:
            span.end_ns = None

    def _end_task(self, task: str, event: GoalEvent, kind: str, at: int, *, ok: bool) -> None:
        fields = vars(event)
        span = self._task_span(task, at)
        span.end_ns = at
        span.attributes["baton.rule"] = fields["rule"]
        span.attributes["baton.reason"] = fields["reason"]
        status = {"OutputAccepted": "succeeded", "TaskFailed": "failed",
                  "TaskAbandoned": "abandoned", "TaskSkipped": "skipped",
                  "TaskCancelled": "cancelled"}[kind]
        span.attributes["baton.status"] = status
        if ok:
            span.ok, span.error = True, None
        elif kind == "TaskFailed":
            span.error = fields["error"]

    # --- reading ---

    def take_closed(self) -> list[SpanRecord]:
        """Spans that ended since the last call (each one handed out once), parents last."""
        closed = [span for span in self.spans.values()
                  if span.end_ns is not None and span.span_id not in self._handed_out]
        self._handed_out.update(span.span_id for span in closed)
        return sorted(closed, key=_depth, reverse=True)

    def all_spans(self) -> list[SpanRecord]:
        """Every span, open ones ended at the last event (`baton.open` says so)."""
        spans = []
        for span in self.spans.values():
            if span.end_ns is None:
                span = SpanRecord(**{**vars(span), "end_ns": self.last_ns,
                                     "attributes": {**span.attributes, "baton.open": True}})
            spans.append(span)
        return sorted(spans, key=lambda s: (s.start_ns, _depth(s)))


def _depth(span: SpanRecord) -> int:
    return 0 if span.parent_id is None else (1 if span.name.startswith("task ") else 2)


def goal_spans(events: Sequence[GoalEvent]) -> list[SpanRecord]:
    """Every span of a goal's history, in start order."""
    projector = SpanProjector()
    projector.feed(events)
    return projector.all_spans()
