"""The attempt context, on both stores: an agent that declares `attempt` (Baton's AttemptContext
or its own model with those fields) is told which attempt it runs and why the previous one was
refused; the context is recorded with the dispatch, and replay and re-execution see the same."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from baton.domain.errors import PlanError
from baton.history.live import LiveAgents
from baton.history.recorded import reexecute
from baton.runtime.loading import prepare_plan
from baton.store.eventstore import BatonStore
from tests import gate_agents
from tests.support import events_of, run

GATES = "tests.gate_agents"


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    gate_agents.reset()
    yield


def _plan(agent: str, **task: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "attempts",
        "agents": {agent: f"{GATES}:{agent}"},
        "defaults": {"retry": {"backoff_s": 0, "jitter": 0}},
        "budget": {"max_tokens": 1000},
        "tasks": [{"id": "t", "agent": agent, "input": {"text": "$goal.text"}, **task}],
    }


@pytest.mark.parametrize("agent", ["picky", "uses_baton_context"])
def test_the_next_attempt_is_told_why_the_last_was_refused(
    store: BatonStore, agent: str
) -> None:
    goal = run(store, _plan(agent), {"text": "hi"})
    assert goal.state.status == "completed"
    first, second = gate_agents.CONTEXTS
    assert first["number"] == 1 and first["previous_errors"] == []
    assert second["number"] == 2
    [why] = second["previous_errors"]
    expected = "validation.contract: text:" if agent == "picky" else "RuntimeError: first attempt"
    assert why.startswith(expected)
    # Recorded with each dispatch: what the agent was told, in the audit's own terms.
    recorded = [e.attempt_context for e in events_of(store, goal.id, "TaskDispatched")]
    assert [c["number"] for c in recorded] == [1, 2]
    assert recorded[1]["previous_errors"] == [why]
    assert recorded[0]["tokens_left"] == 1000
    if agent == "picky":
        assert "tokens_left" not in second  # its own model has no such field


def test_replay_and_reexecution_hand_the_agent_the_same_context(store: BatonStore) -> None:
    goal = run(store, _plan("picky"), {"text": "hi"})
    live = list(gate_agents.CONTEXTS)
    events = list(store.events(goal.id))
    loaded = prepare_plan(events[0].plan)  # type: ignore[attr-defined]
    from baton.domain.replay import replay

    assert replay(events, loaded.contracts).ok
    gate_agents.CONTEXTS.clear()
    # today's agent, called again
    again = reexecute(events, loaded, agents=LiveAgents(loaded, events))
    assert again.ok, again.divergence
    assert live == gate_agents.CONTEXTS


def test_an_agent_not_declaring_attempt_records_none(store: BatonStore) -> None:
    plan = {"version": 1, "name": "plain", "agents": {"write": f"{GATES}:write"},
            "tasks": [{"id": "t", "agent": "write", "input": {"question": "q"}}]}
    goal = run(store, plan, {})
    [dispatched] = events_of(store, goal.id, "TaskDispatched")
    assert dispatched.attempt_context is None


class Narrow(BaseModel):
    number: str  # cannot hold an attempt number


def narrow(draft: gate_agents.Draft, *, attempt: Narrow) -> gate_agents.Draft:
    return draft


def test_an_attempt_model_that_cannot_hold_the_fields_is_refused_up_front() -> None:
    plan = {"version": 1, "name": "bad", "agents": {"n": f"{__name__}:narrow"},
            "tasks": [{"id": "t", "agent": "n", "input": {"text": "x"}}]}
    with pytest.raises(PlanError, match="annotated with Narrow, which cannot hold"):
        prepare_plan(plan)
