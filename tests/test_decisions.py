"""Typed decisions: each mirrors its Goal event exactly, and a wrong field is refused early."""

from __future__ import annotations

import dataclasses
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from baton.domain.decisions import (
    DECISION_TYPES,
    Decision,
    GoalFailed,
    TaskDecision,
    TaskDispatched,
    TaskReady,
    decision_of,
)
from baton.domain.goal import DECISION_KINDS, Goal
from baton.domain.history import payload
from baton.domain.plan import Plan

ROOT = Path(__file__).resolve().parent.parent
_EVENT_BASE = {"originator_id", "originator_version", "timestamp"}


def _shape(cls: type) -> dict[str, tuple[object, bool]]:
    """Field name -> (annotation as written, whether it has a default)."""
    return {
        f.name: (f.type, f.default is not dataclasses.MISSING)
        for f in dataclasses.fields(cls)
        if f.name not in _EVENT_BASE | {"prepared"}
    }


def test_there_is_one_decision_class_per_decision_event() -> None:
    assert set(DECISION_TYPES) == set(DECISION_KINDS)


@pytest.mark.parametrize("kind", sorted(DECISION_KINDS))
def test_a_decision_has_exactly_the_fields_of_its_event(kind: str) -> None:
    decision_class, event_class = DECISION_TYPES[kind], DECISION_KINDS[kind]
    assert _shape(decision_class) == _shape(event_class)
    assert decision_class.payload_names == tuple(_shape(decision_class))
    task_field = _shape(event_class).get("task")
    assert issubclass(decision_class, TaskDecision) == (task_field == ("str", False))


def test_a_misspelt_or_missing_field_is_refused_where_the_decision_is_made() -> None:
    with pytest.raises(TypeError, match="input"):
        TaskReady(task="a", input=[], rule="r", reason="x")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="inputs"):
        TaskReady(task="a", rule="r", reason="x")  # type: ignore[call-arg]


def test_mypy_refuses_a_misspelt_field_and_a_misspelt_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from baton.domain.decisions import TaskReady
            from baton.domain.state import TaskState

            def decide_badly(task: TaskState) -> bool:
                TaskReady(task="a", input=[], rule="r", reason="x")
                TaskReady(task="a", rule="r", reason="x")
                return task.status == "runing"
            """
        )
    )
    # mypy reads `baton` from a tree laid out as pyproject's package-dir says, whatever kind of
    # install this is (a default editable install hides the sources behind an import hook).
    root = Path(__file__).resolve().parent.parent
    tree = tmp_path / "src" / "baton"
    tree.mkdir(parents=True)
    for entry in (root / "adapters").iterdir():
        (tree / entry.name).symlink_to(entry)
    for mounted in ("domain", "projections"):
        (tree / mounted).symlink_to(root / mounted)
    monkeypatch.setenv("MYPYPATH", str(tmp_path / "src"))
    out, _, status = api.run(["--strict", "--no-error-summary", "--cache-dir",
                              str(tmp_path / "cache"), str(snippet)])
    assert status == 1
    assert 'Unexpected keyword argument "input" for "TaskReady"' in out
    assert 'Missing named argument "inputs" for "TaskReady"' in out
    assert "Non-overlapping equality check" in out and "'runing'" in out


def test_recorded_payloads_come_from_the_typed_fields() -> None:
    plan = Plan.model_validate(
        {
            "version": 1,
            "name": "p",
            "agents": {"x": "tests.agents:echo"},
            "tasks": [{"id": "a", "agent": "x", "input": {"text": "$goal.text"}}],
        }
    )
    at = datetime(2025, 1, 1, tzinfo=UTC)
    goal = Goal.start(goal_id="g", plan=plan, goal_input={}, concurrency=1, at=at)
    goal.record(TaskReady(task="a", inputs=[], rule="dag.inputs_ready", reason="r"))
    dispatched = TaskDispatched(
        task="a", attempt=1, input_digest="d", idempotency_key="k", rule="dag.dispatch",
        reason="r", prepared=object(),  # never recorded
    )
    goal.record(dispatched)
    goal.record(GoalFailed(rule="output.unresolved", reason="r"))
    events = list(goal.collect_events())[1:]
    assert payload(events[1], timestamp=False) == {
        "task": "a", "attempt": 1, "input_digest": "d", "idempotency_key": "k",
        "rule": "dag.dispatch", "reason": "r", "reserved": None, "policy": None,
        "attempt_context": None, "ready": None,
    }
    assert payload(events[2], timestamp=False) == {
        "rule": "output.unresolved", "reason": "r", "task": None,
    }
    copies: list[Decision] = [
        decision_of(type(e).__name__, payload(e, timestamp=False)) for e in events
    ]
    assert copies == [TaskReady(task="a", inputs=[], rule="dag.inputs_ready", reason="r"),
                      dispatched, GoalFailed(task=None, rule="output.unresolved", reason="r")]
