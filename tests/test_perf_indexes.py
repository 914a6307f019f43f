"""The indexes `decide` reads instead of scanning the plan stay equal to a scan, after every event.

`GoalState` keeps per-status task sets, unmet-upstream counts, pending candidates, accepted
outputs and the tasks holding an outcome in step with the statuses, so that `decide` costs the
same on a 500-task goal as on a 5-task one. Every golden history of every shape is folded event
by event and each index is compared with what a full scan of the tasks computes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from baton.domain.goal import Goal
from baton.domain.lifecycle import TASK_FINAL
from baton.domain.state import GoalState
from baton.history.runfile import read_run

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.jsonl"))


def _scanned(state: GoalState) -> dict[str, Any]:
    tasks = state.tasks.values()
    by_status: dict[str, set[str]] = {}
    for task in tasks:
        by_status.setdefault(task.status, set()).add(task.id)
    return {
        "by_status": by_status,
        "accepted": {t.id: t.output for t in tasks if t.status == "succeeded"},
        "judgeable": {t.id for t in tasks if t.outcome is not None},
        "unmet": {
            t.id: sum(state.tasks[dep].status != "succeeded" for dep in state.plan.deps[t.id])
            for t in tasks
        },
        # a planner or map running as the tasks it added holds no slot
        "in_flight": sum(t.status == "running" and t.id not in state.children for t in tasks),
        "open_children": {
            parent: sum(state.tasks[c].status not in TASK_FINAL for c in children)
            for parent, children in state.children.items()
        },
    }


def _indexed(state: GoalState) -> dict[str, Any]:
    return {
        "by_status": {status: ids for status, ids in state.by_status.items() if ids},
        "accepted": state.accepted,
        "judgeable": state.judgeable,
        "unmet": state.unmet,
        "in_flight": state.in_flight,
        "open_children": state.open_children,
    }


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_indexes_match_a_scan_after_every_event(path: Path) -> None:
    events = read_run(str(path)).events
    goal: Goal | None = None
    for event in events:
        goal = event.mutate(goal)
        assert goal is not None
        state = goal.state
        assert _indexed(state) == _scanned(state), (path.stem, event.originator_version)
        # candidates are pending tasks only (what `_propagate` may move)
        assert state.candidates <= state.pending_ids
        ready_now = {t for t in state.pending_ids if state.unmet[t] == 0}
        assert ready_now <= state.candidates
