"""What-if replay: the recorded observations re-decided under a changed plan, up to the point
where the recording stops telling what would have happened."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baton.domain.whatif import what_if
from baton.runtime.loading import prepare_plan
from baton.store.eventstore import BatonStore
from tests import agents
from tests.cli_support import baton
from tests.replay_support import SHAPES, seq_of
from tests.support import run


@pytest.fixture(autouse=True)
def _reset_agents() -> Iterator[None]:
    agents.CALLS.clear()
    yield


def changed(events: Any, task_id: str, **overrides: Any) -> Any:
    data = json.loads(json.dumps(events[0].plan))
    for spec in data["tasks"]:
        if spec["id"] == task_id:
            spec.update(overrides)
    return prepare_plan(data)


def test_the_same_plan_decides_the_same(store: BatonStore) -> None:
    goal = SHAPES["escalated"](store)
    events = list(store.events(goal.id))
    loaded = prepare_plan(events[0].plan)  # type: ignore[attr-defined]
    result = what_if(events, loaded.plan, loaded.contracts)
    assert result.ok and result.stopped is None
    assert result.events == len(events)
    assert result.state.status == result.recorded_state.status == "completed"


def test_fewer_retries_fail_where_the_recording_retried(store: BatonStore) -> None:
    goal = SHAPES["retried"](store)
    events = list(store.events(goal.id))
    loaded = changed(events, "a", retry={"max_attempts": 1, "backoff_s": 0.02})
    result = what_if(events, loaded.plan, loaded.contracts)
    assert not result.ok
    first = result.differences[0]
    assert first.seq == seq_of(events, "AgentRaised")
    assert [d["kind"] for d in first.recorded] == ["RetryScheduled"]
    assert [d["kind"] for d in first.whatif][-1] == "GoalFailed"
    assert result.state.status == "failed" and result.recorded_state.status != "failed"
    assert result.stopped is not None and "already ended (failed)" in result.stopped["reason"]


def test_more_retries_stop_where_the_recording_has_no_outcome(store: BatonStore) -> None:
    goal = SHAPES["failed"](store)  # two attempts, both raised, then failed
    events = list(store.events(goal.id))
    loaded = changed(events, "a", retry={"max_attempts": 5, "backoff_s": 0})
    result = what_if(events, loaded.plan, loaded.contracts)
    difference = result.differences[-1]
    assert next(d["kind"] for d in difference.recorded) == "TaskFailed"
    assert "RetryScheduled" in [d["kind"] for d in difference.whatif]
    assert result.stopped is not None
    assert "'a' attempt 3, which the recording never ran" in result.stopped["reason"]
    assert result.state.tasks["a"].status == "running"


def test_escalating_instead_of_failing(store: BatonStore) -> None:
    goal = SHAPES["failed"](store)
    events = list(store.events(goal.id))
    loaded = changed(events, "a", on_failure="escalate")
    result = what_if(events, loaded.plan, loaded.contracts)
    whatif_kinds = [d["kind"] for d in result.differences[-1].whatif]
    assert whatif_kinds == ["TaskEscalated", "GoalSuspended"]
    assert result.state.status == "waiting" and result.recorded_state.status == "failed"


def test_a_lower_budget_stops_earlier_cli(store_url: str, tmp_path: Path) -> None:
    from baton.store.eventstore import open_store

    store = open_store(store_url)
    try:
        data = {
            "version": 1, "name": "budget",
            "agents": {"costly": "tests.agents:costly"},
            "tasks": [{"id": f"t{i}", "agent": "costly", "input": {"text": "$goal.text"}}
                      for i in range(3)],
        }
        run(store, data, {"text": "x"}, goal_id="g", concurrency=1)
    finally:
        store.close()
    path = tmp_path / "tighter.json"
    path.write_text(json.dumps({**data, "budget": {"max_tokens": 150}}))
    result = baton("replay", "g", "--plan", str(path), "--json", store=store_url)
    assert result.code == 1, result.err
    report = result.json()
    assert not report["ok"]
    kinds = [d["kind"] for diff in report["differences"] for d in diff["whatif"]]
    assert "BudgetExhausted" in kinds
    assert report["state"]["status"] == "failed"
    # Compared up to where the changed run ended; the recording was still running there.
    assert report["stopped"]["reason"].startswith("under the changed plan the goal had already")
    assert report["recorded_state"]["status"] == "running"
    human = baton("replay", "g", "--plan", str(path), store=store_url)
    assert human.code == 1 and "BudgetExhausted" in human.out
    same = baton("replay", "g", "--plan", str(tmp_path / "missing.yaml"), store=store_url)
    assert same.code == 2 and "Traceback" not in same.err


def test_a_changed_plan_with_other_task_ids_stops_with_a_reason(store: BatonStore) -> None:
    """Renaming a task: the changed run dispatches a task the recording never ran; removing
    one: the recorded outcomes of that task do not apply. Neither is a crash."""
    goal = SHAPES["completed"](store)
    events = list(store.events(goal.id))
    data = json.loads(json.dumps(events[0].plan))  # type: ignore[attr-defined]
    text = json.dumps(data).replace('"b"', '"b2"').replace("$b.", "$b2.")
    renamed = prepare_plan(json.loads(text))
    result = what_if(events, renamed.plan, renamed.contracts)
    assert not result.ok and result.stopped is not None
    assert "dispatches 'b2' attempt 1, which the recording never ran" in result.stopped["reason"]

    pair = {"version": 1, "name": "pair", "agents": {"upper": "tests.agents:upper"},
            "tasks": [{"id": tid, "agent": "upper", "input": {"text": "$goal.text"}}
                      for tid in ("x", "y")]}
    run(store, pair, {"text": "hi"}, goal_id="pair", concurrency=1)  # x runs first
    events = list(store.events("pair"))
    fewer = prepare_plan({**pair, "tasks": pair["tasks"][1:]})
    result = what_if(events, fewer.plan, fewer.contracts)
    assert result.stopped is not None
    assert result.stopped["seq"] == seq_of(events, "AgentReturned")
    assert "the changed plan has no task 'x'" in result.stopped["reason"]
