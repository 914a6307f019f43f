"""The audit timeline: every decision in order, with the observation that caused it.

Built from the events alone (no state fold), so a history that no longer replays can still be
read. Each decision keeps its whole payload; `attempt` is filled in for decisions that concern an
attempt without naming it (the task's latest dispatch, or for `TaskReady` the attempt it readies).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from baton.domain.goal import GoalEvent
from baton.domain.history import is_observation, kind_of, to_json

__all__ = ["reason_shown", "timeline"]

_LEADING = ("seq", "at", "kind", "task", "attempt", "rule", "reason", "policy")


def _ordered(entry: dict[str, Any], leading: tuple[str, ...] = _LEADING) -> dict[str, Any]:
    """The keys every entry has first (None when absent), then the rest of the payload."""
    lead = {key: entry.get(key) for key in leading}
    return lead | {k: v for k, v in entry.items() if k not in lead}


def timeline(events: Sequence[GoalEvent], *, task: str | None = None) -> dict[str, Any]:
    """`{"goal_id", "started_at", "decisions": [...], "observations": [...]}` in event order.

    Each decision names the observation it followed (`caused_by`, its seq); each observation
    lists the decisions it caused (`caused`). With `task`, only the decisions that concern that
    task, the observations about it, and the observations that caused those decisions.
    """
    attempts: dict[str, int] = {}
    granted: dict[str, dict[str, Any]] = {}  # task -> the human retry its next dispatch uses
    decisions: list[dict[str, Any]] = []
    observations: list[dict[str, Any]] = []
    for event in events:
        entry = to_json(event)
        entry.setdefault("task", None)
        task_id = entry["task"]
        if kind_of(event) == "TaskDispatched" and task_id is not None:
            attempts[task_id] = entry["attempt"]
            # The recorded reason counts attempts against the retry policy ("attempt 4 (retry
            # policy allows 2)"); the attempt was a human's to grant, and the audit says so.
            if task_id in granted:
                entry["granted_by"] = granted.pop(task_id)
        if kind_of(event) == "HumanResolved" and entry.get("action") == "retry" and task_id:
            granted[task_id] = {"by": entry.get("by"), "reason": entry.get("reason"),
                                "seq": entry["seq"]}
        if "attempt" not in entry:
            latest = attempts.get(task_id) if task_id is not None else None
            if kind_of(event) == "TaskReady" and task_id is not None:
                latest = (latest or 0) + 1
            entry["attempt"] = latest
        if is_observation(event):
            if kind_of(event) == "Started":
                entry["plan"] = entry["plan"].get("name")
            observations.append(_ordered(entry | {"caused": []}, _LEADING[:5]))
        else:
            cause = observations[-1] if observations else None
            entry["caused_by"] = None if cause is None else cause["seq"]
            decisions.append(_ordered(entry))
            if cause is not None:
                cause["caused"].append(entry["seq"])
    if task is not None:
        decisions = [d for d in decisions if d["task"] == task or _mentions(d, task)]
        causes = {d["caused_by"] for d in decisions}
        observations = [o for o in observations if o["task"] == task or o["seq"] in causes]
    first = events[0] if events else None
    return {
        "goal_id": None if first is None else first.originator_id,
        "started_at": None if first is None else first.timestamp.isoformat(),
        "decisions": decisions,
        "observations": observations,
    }


def _mentions(entry: dict[str, Any], task: str) -> bool:
    """Goal-level decisions that name the task (GoalSuspended's waiting_on, for instance)."""
    return entry["task"] is None and task in (entry.get("waiting_on") or [])


def reason_shown(fields: dict[str, Any]) -> str:
    """A decision's reason as people read it (the audit, the web view): a dispatch that holds
    its task's readiness (decision rules 3) says first why the task was ready, unless its own
    reason quotes that already (a human's retry: "attempt 2: retry requested by ana: …")."""
    reason = fields.get("reason") or ""
    ready = fields.get("ready")
    if not ready or ready["reason"] in reason:
        return reason
    return f"ready: {ready['reason']} ({ready['rule']}); {reason}"
