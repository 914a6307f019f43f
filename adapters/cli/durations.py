"""Task durations of one goal, read from its events (for the summary `run` prints)."""

from __future__ import annotations

from baton.store.eventstore import BatonStore

__all__ = ["task_durations"]

def task_durations(store: BatonStore, goal_id: str) -> dict[str, float]:
    """Total agent time per task (ms), from the recorded observations."""
    durations: dict[str, float] = {}
    for event in store.events(goal_id):
        duration = getattr(event, "duration_ms", None)
        if duration is not None:
            task = event.task  # type: ignore[attr-defined]
            durations[task] = durations.get(task, 0.0) + duration
    return durations
