"""Replay re-decides recorded histories with today's code: equal decisions are `ok`; a changed
rule is reported at its first divergent decision, recorded against replayed."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from baton.domain.goal import OBSERVATION_KINDS
from baton.domain.plan import Plan
from baton.store.eventstore import BatonStore
from tests import agents
from tests.cli_support import baton
from tests.replay_support import SHAPES, replayed, seq_of, states_as_they_ran
from tests.support import kinds

# `baton.domain.decide` the attribute is the function (re-exported by `domain`); this is the module.
DECIDE = importlib.import_module("baton.domain.decide")


@pytest.fixture(autouse=True)
def _reset_agents() -> Iterator[None]:
    agents.CALLS.clear()
    yield


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_goals_of_every_shape_replay_ok(store: BatonStore, shape: str) -> None:
    goal = SHAPES[shape](store)
    result = replayed(store, goal.id)
    assert result.ok, result.divergence
    assert result.events == goal.version
    assert result.decisions == sum(
        1 for k in kinds(store, goal.id)
        if k not in OBSERVATION_KINDS
    )
    assert result.state.status == goal.state.status
    assert result.state.output == goal.state.output


def test_the_shapes_cover_what_they_claim(store: BatonStore) -> None:
    for make in SHAPES.values():
        make(store)
    assert {"RetryScheduled", "ClockTicked"} <= set(kinds(store, "retried"))
    assert {"TaskFailed", "GoalFailed"} <= set(kinds(store, "failed"))
    assert {"TaskEscalated", "HumanResolved", "RunResumed", "GoalResumed", "GoalCompleted"} <= set(
        kinds(store, "escalated"))
    assert {"TaskAbandoned", "TaskSkipped", "GoalCancelled"} <= set(kinds(store, "cancelled"))


def test_a_changed_backoff_rule_diverges_at_the_first_retry(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    goal = SHAPES["retried"](store)
    events = list(store.events(goal.id))
    monkeypatch.setattr(DECIDE, "backoff_delay", lambda policy, *, failures, jitter: 42.0)
    result = replayed(store, goal.id)
    assert not result.ok and result.divergence is not None
    divergence = result.divergence
    assert divergence.seq == seq_of(events, "RetryScheduled")
    assert divergence.recorded is not None and divergence.replayed is not None
    assert divergence.recorded["kind"] == divergence.replayed["kind"] == "RetryScheduled"
    assert divergence.replayed["delay_s"] == 42.0
    assert divergence.recorded["delay_s"] != 42.0
    assert {"delay_s", "due_at", "reason"} <= set(divergence.fields)
    assert result.events == divergence.seq - 1  # folded up to the decision before


def test_a_changed_retry_count_diverges_with_both_decisions(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    goal = SHAPES["retried"](store)
    events = list(store.events(goal.id))
    original = Plan.retry_for
    monkeypatch.setattr(
        Plan, "retry_for", lambda self, spec: original(self, spec).model_copy(
            update={"max_attempts": 1})
    )
    divergence = replayed(store, goal.id).divergence
    assert divergence is not None
    # The first difference is the dispatch's reason and recorded policy, before any retry.
    assert divergence.seq == seq_of(events, "TaskDispatched")
    assert divergence.recorded is not None and divergence.replayed is not None
    assert divergence.recorded["policy"]["max_attempts"] == 3
    assert divergence.replayed["policy"]["max_attempts"] == 1


def test_today_deciding_nothing_where_a_decision_was_recorded_is_a_divergence(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    goal = SHAPES["completed"](store)
    monkeypatch.setattr(DECIDE, "_complete", lambda state: [])
    divergence = replayed(store, goal.id).divergence
    assert divergence is not None
    assert divergence.recorded is not None and divergence.recorded["kind"] == "GoalCompleted"
    assert divergence.replayed is None


def test_today_raising_is_reported_not_a_traceback(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    goal = SHAPES["completed"](store)

    def broken(state: Any, contracts: Any) -> Any:
        raise ZeroDivisionError("new bug")

    monkeypatch.setattr(DECIDE, "_propagate", broken)
    divergence = replayed(store, goal.id).divergence
    assert divergence is not None and divergence.seq == 2
    assert divergence.replayed == {"error": "ZeroDivisionError: new bug"}


def test_state_at_every_event_matches_the_state_the_goal_had_then(store: BatonStore) -> None:
    with states_as_they_ran() as seen:
        goal = SHAPES["escalated"](store)
    versions = sorted(v for (gid, v) in seen if gid == goal.id)
    assert versions == list(range(1, goal.version + 1))
    for n in versions:
        result = replayed(store, goal.id, at=n)
        assert result.ok, (n, result.divergence)
        assert result.events == n
        assert result.to_json()["state"] == seen[(goal.id, n)], n


def test_replay_at_a_timestamp_moved_by_an_edit_diverges(store: BatonStore) -> None:
    goal = SHAPES["completed"](store)
    events = list(store.events(goal.id))
    observation = events[seq_of(events, "AgentReturned") - 1]
    # Decisions take the time of the observation they follow; a moved clock shows.
    object.__setattr__(observation, "timestamp", observation.timestamp + timedelta(seconds=5))
    from baton.domain.replay import replay
    from tests.replay_support import contracts_of

    divergence = replay(events, contracts_of(events)).divergence
    assert divergence is not None and divergence.fields == ("timestamp",)


def test_a_goal_resumed_after_a_crash_replays_ok(sqlite_url: str, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "version: 1\nname: crashy\n"
        "agents: {step: 'tests.agents:logged_step', book: 'tests.agents:logged_book'}\n"
        "tasks:\n"
        "  - {id: a, agent: step, input: {text: $goal.text}}\n"
        "  - {id: b, agent: book, side_effects: idempotent, input: {text: $a.text}}\n"
        "  - {id: c, agent: step, input: {text: $b.text}}\n"
    )
    env = {"BATON_TEST_DIR": str(tmp_path)}
    killed = baton("run", str(plan), "--input", '{"text": "go"}', "--goal-id", "g",
                   store=sqlite_url, env={**env, "BATON_CRASH_AT_EVENT": "5"})
    assert killed.code == -9  # SIGKILL after the save that reached 5 events: b dispatched
    resumed = baton("resume", "g", "--json", store=sqlite_url, env=env)
    assert resumed.code == 0, resumed.err
    assert resumed.json()["status"] == "completed"
    result = baton("replay", "g", "--json", store=sqlite_url)
    assert result.code == 0, result.out
    data = result.json()
    assert data["ok"] and data["divergence"] is None
    assert data["state"]["status"] == "completed"
    audit = baton("audit", "g", "--json", store=sqlite_url).json()
    assert "RunResumed" in [o["kind"] for o in audit["observations"]]
    assert "AttemptInterrupted" in [d["kind"] for d in audit["decisions"]]  # b was in flight
    again = baton("replay", "g", "--reexecute", "--json", store=sqlite_url)
    assert again.code == 0 and again.json()["ok"], again.out
