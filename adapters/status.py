"""Read-side helpers until the projections take over: goal listing and task durations."""

from __future__ import annotations

from typing import Any

from adapters.store import BatonStore

__all__ = ["goal_list", "task_durations"]

_STARTED_TOPIC = "domain.goal:Goal.Started"


def goal_list(store: BatonStore) -> list[dict[str, Any]]:
    """Every goal with its plan, status and last update, newest first."""
    ids: list[str] = []
    start = 1
    while True:
        batch = store.recorder.select_notifications(
            start=start, limit=1000, topics=[_STARTED_TOPIC]
        )
        ids += [str(n.originator_id) for n in batch]
        if len(batch) < 1000:
            break
        start = batch[-1].id + 1
    rows = []
    for goal_id in ids:
        goal = store.get(goal_id)
        rows.append({
            "goal_id": goal.id,
            "plan": goal.state.plan.name,
            "status": goal.state.status,
            "updated_at": goal.modified_on.isoformat(),
        })
    rows.sort(key=lambda row: row["updated_at"], reverse=True)
    return rows


def task_durations(store: BatonStore, goal_id: str) -> dict[str, float]:
    """Total agent time per task (ms), from the recorded observations."""
    durations: dict[str, float] = {}
    for event in store.events(goal_id):
        duration = getattr(event, "duration_ms", None)
        if duration is not None:
            task = event.task  # type: ignore[attr-defined]
            durations[task] = durations.get(task, 0.0) + duration
    return durations
