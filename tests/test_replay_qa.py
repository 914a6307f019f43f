"""Findings of a QA pass over debugging a failed run: trace, re-execution and what-if of the
histories an on-call engineer meets (a failed goal, a contract changed since, a fork)."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.history.runfile import read_run
from baton.telemetry.spans import goal_spans

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("golden", ["failed.jsonl", "failed-rules3.jsonl",
                                    "budgeted-rules5.jsonl"])
def test_the_trace_of_a_failed_goal_ends_its_goal_span_as_failed(golden: str) -> None:
    # GoalFailed names the task that failed the goal: it was filed on that task's span, and the
    # goal span stayed `running` and open (never exported live, shown running by `baton trace`).
    run = read_run(GOLDEN / golden)
    spans = goal_spans(run.events)
    goal = next(s for s in spans if s.parent_id is None)
    assert run.events[-1].__class__.__name__ == "GoalFailed"
    assert goal.attributes["baton.status"] == "failed"
    assert "baton.open" not in goal.attributes
    assert goal.end_ns is not None and goal.error == run.events[-1].reason  # type: ignore[attr-defined]
    assert "GoalFailed" in [e.name for e in goal.events]
    assert not any("GoalFailed" in [e.name for e in s.events] for s in spans if s is not goal)
