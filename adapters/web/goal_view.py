"""What the goal page shows, computed from the goal's events alone (no agent is imported).

The state at event N is the events folded up to N (the aggregate's own mutators); the graph, the
task table and the details read that state. Recorded values are already masked where a contract
types them `SecretStr`; `masked` also hides values under secret-looking keys, in case a contract
did not say so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from baton.domain.audit import reason_shown
from baton.domain.errors import ResolveError
from baton.domain.goal import Goal, GoalEvent
from baton.domain.history import fold, is_observation, jsonable, kind_of, started_event
from baton.domain.references import parse_binding, resolve_binding
from baton.web.svg import graph_svg, timeline_svg
from baton.web.timeline import timeline_of

__all__ = ["DECISIONS_PER_PAGE", "TASKS_PER_PAGE", "goal_page", "goal_url", "masked",
           "state_at"]

DECISIONS_PER_PAGE = 100
TASKS_PER_PAGE = 50
MASK = "**********"
_SECRET_KEY = re.compile(
    r"(secret|password|passwd|api[_-]?key|authorization|credential|private[_-]?key|(^|_)token$)",
    re.IGNORECASE,
)


def goal_url(goal_id: str, page: str = "") -> str:
    """The path of a goal's page (or of `page` under it): the id percent-encoded as one path
    segment, `/`, `#`, `?` and `%` included, so any id a user chose makes a working link."""
    return f"/goals/{quote(goal_id, safe='')}" + (f"/{page}" if page else "")


def masked(value: Any) -> Any:
    """`value` with anything under a secret-looking key replaced by asterisks."""
    if isinstance(value, dict):
        return {k: (MASK if _SECRET_KEY.search(str(k)) and v is not None else masked(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def shown(value: Any) -> str:
    return json.dumps(jsonable(masked(value)), indent=1, default=str)


def state_at(events: Sequence[GoalEvent], at: int) -> Goal:
    """The goal after its first `at` events."""
    return fold(events[:at])


def _pages(total: int, size: int) -> int:
    return max(1, -(-total // size))


def goal_page(
    events: Sequence[GoalEvent],
    *,
    at: int | None,
    page: int | None,
    task: str | None,
    tasks_page: int = 1,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The template context of `/goals/<id>`."""
    total = len(events)
    at = total if at is None else min(max(at, 1), total)
    started = started_event(events)
    goal = state_at(events, at)
    state = goal.state
    plan = state.plan
    statuses = {tid: t.status for tid, t in state.tasks.items()}
    line = timeline_of(events, now=now if at == total else None)
    tasks_pages = _pages(len(line.tasks), TASKS_PER_PAGE)
    tasks_page = min(max(tasks_page, 1), tasks_pages)
    shown_rows = line.tasks[(tasks_page - 1) * TASKS_PER_PAGE: tasks_page * TASKS_PER_PAGE]
    decisions = [event for event in events if not is_observation(event)]
    if page is None:  # the page holding the last decision at or before event N
        index = sum(1 for d in decisions if d.originator_version <= at)
        page = max(1, -(-index // DECISIONS_PER_PAGE))
    pages = _pages(len(decisions), DECISIONS_PER_PAGE)
    page = min(max(page, 1), pages)
    shown_decisions = [_decision(d) for d in
                       decisions[(page - 1) * DECISIONS_PER_PAGE: page * DECISIONS_PER_PAGE]]
    marker = events[at - 1].timestamp if at < total else None
    order = list(plan.order) + [tid for tid in state.tasks if tid not in plan.task_map]
    page_tasks = order[(tasks_page - 1) * TASKS_PER_PAGE: tasks_page * TASKS_PER_PAGE]
    return {
        "goal_id": started.originator_id,
        "plan_name": plan.name,
        "status": state.status,
        "reason": state.reason,
        "total": total,
        "at": at,
        "at_event": _event_line(events[at - 1]),
        "used": {"attempts": state.attempts_used, "tokens": state.used.tokens,
                 "cost_usd": round(state.used.cost_usd, 6)},
        "output": None if state.output is None else shown(state.output),
        "tasks": [
            {"id": tid, "status": statuses.get(tid, "pending"),
             "attempts": state.tasks[tid].attempts if tid in state.tasks else 0,
             "reason": state.tasks[tid].reason if tid in state.tasks else None}
            for tid in page_tasks
        ],
        # a big goal's graph and table show the tasks of the page (a 2,500-task chain would
        # be a drawing 500,000 pixels wide)
        "graph": graph_svg(page_tasks, plan.deps, statuses, selected=task,
                           link=goal_url(started.originator_id)
                           + (f"?at={at}&task=" if at < total else "?task=")),
        "timeline": timeline_svg(line, shown_rows, marker=marker),
        "tasks_page": tasks_page,
        "tasks_pages": tasks_pages,
        "decisions": shown_decisions,
        "page": page,
        "pages": pages,
        "detail": _task_detail(events[:at], goal, task) if task else None,
        "running": state.status in ("running", "waiting"),
        "gates": _gates(events, goal) if at == total else [],
    }


def _gates(events: Sequence[GoalEvent], goal: Goal) -> list[dict[str, Any]]:
    """Tasks that wait for an answer or an approval, with the question or the input shown,
    for the forms of the goal page (baton.domain.gates)."""
    waiting = {tid: task for tid, task in goal.state.tasks.items()
               if task.status == "escalated" and task.waiting_for in ("clarification", "approval")}
    if not waiting:
        return []
    inputs = {vars(e)["task"]: vars(e)["input"] for e in events
              if kind_of(e) == "ApprovalRequested"}
    return [
        {"id": tid, "waiting_for": task.waiting_for, "question": task.question,
         "input": shown(inputs.get(tid)) if task.waiting_for == "approval" else None}
        for tid, task in waiting.items()
    ]


def _decision(event: GoalEvent) -> dict[str, Any]:
    fields = vars(event)
    return {"seq": event.originator_version, "at": event.timestamp.isoformat(),
            "kind": kind_of(event), "task": fields.get("task"), "attempt": fields.get("attempt"),
            "rule": fields.get("rule"), "reason": reason_shown(fields)}


def _event_line(event: GoalEvent) -> str:
    fields = vars(event)
    task = f" {fields['task']}" if fields.get("task") else ""
    attempt = f" #{fields['attempt']}" if fields.get("attempt") else ""
    return f"{kind_of(event)}{task}{attempt}"


def _task_detail(events: Sequence[GoalEvent], goal: Goal, task_id: str) -> dict[str, Any] | None:
    state = goal.state
    task = state.tasks.get(task_id)
    spec = state.plan.task_map.get(task_id)
    if task is None or spec is None:
        return None
    attempts: dict[int, dict[str, Any]] = {}
    for event in events:
        fields = vars(event)
        if fields.get("task") != task_id:
            continue
        kind = kind_of(event)
        number: Any = fields.get("attempt")
        if kind == "TaskDispatched":
            attempts[number] = {"attempt": number, "dispatched": event.timestamp.isoformat(),
                                "seq": event.originator_version,
                                "input_digest": fields["input_digest"], "outcome": None,
                                "verdict": None, "duration_ms": None, "usage": None}
        elif number in attempts and kind in ("AgentReturned", "AgentRaised", "AgentTimedOut"):
            entry = attempts[number]
            entry["duration_ms"] = fields.get("duration_ms")
            entry["usage"] = fields.get("usage")
            if kind == "AgentReturned":
                entry["outcome"] = fields.get("output_error") or shown(fields.get("output"))
            elif kind == "AgentRaised":
                entry["outcome"] = f"raised {fields['error_type']}: {fields['message']}"
            else:
                entry["outcome"] = f"timed out after {fields['timeout_s']:g}s"
        elif number in attempts and "rule" in fields:
            errors = fields.get("errors")
            extra = f" ({'; '.join(errors)})" if errors else ""
            attempts[number]["verdict"] = f"{kind} · {fields['rule']} · {fields['reason']}{extra}"
    try:
        outputs = {tid: t.output for tid, t in state.tasks.items() if t.status == "succeeded"}
        built = resolve_binding(parse_binding(spec.bindings), state.input, outputs)
        task_input = shown(built)
    except ResolveError as exc:
        task_input = f"(not built yet: {exc})"
    return {
        "id": task_id,
        "agent": spec.agent,
        "status": task.status,
        "side_effects": spec.side_effects,
        "attempts": list(attempts.values()),
        "bindings": shown(spec.bindings),
        "input": task_input,
        "output": None if task.output is None else shown(task.output),
        "last_error": task.last_error,
        "reason": task.reason,
    }
