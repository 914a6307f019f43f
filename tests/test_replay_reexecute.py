"""Re-execution replay runs the whole pipeline again with recorded agent outputs and must
produce the recorded event stream; a change in recording, validation or contracts shows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import BaseModel

from baton.history.recorded import NotRecorded, RecordedAgents, RecordedTimeout, reexecute
from baton.runtime.loading import prepare_plan
from baton.store.eventstore import BatonStore
from tests import agents
from tests.replay_support import SHAPES, seq_of
from tests.support import plan, run, task


@pytest.fixture(autouse=True)
def _reset_agents() -> Iterator[None]:
    agents.CALLS.clear()
    yield


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_shape_reexecutes_to_the_same_stream(store: BatonStore, shape: str) -> None:
    goal = SHAPES[shape](store)
    events = list(store.events(goal.id))
    result = reexecute(events, prepare_plan(events[0].plan))  # type: ignore[attr-defined]
    assert result.ok, result.divergence
    assert result.events == len(events)
    assert result.state.status == goal.state.status


def test_a_smaller_output_cap_shows_at_the_first_agent_output(store: BatonStore) -> None:
    goal = SHAPES["completed"](store)
    events = list(store.events(goal.id))
    result = reexecute(events, prepare_plan(events[0].plan), max_output_bytes=5)  # type: ignore[attr-defined]
    divergence = result.divergence
    assert divergence is not None
    assert divergence.seq == seq_of(events, "AgentReturned")
    assert divergence.replayed is not None and "over the 5-byte cap" in divergence.replayed[
        "output_error"]
    assert {"output", "output_error"} <= set(divergence.fields)


def test_a_stricter_output_contract_shows_as_a_different_verdict(store: BatonStore) -> None:
    goal = SHAPES["completed"](store)
    events = list(store.events(goal.id))
    loaded = prepare_plan(events[0].plan)  # type: ignore[attr-defined]

    class Stricter(BaseModel):
        text: str
        checked: bool  # a field today's contract requires, which the recorded output lacks

    contract = loaded.contracts["upper"]
    loaded.contracts["upper"] = type(contract)(contract.input_model, Stricter)
    divergence = reexecute(events, loaded).divergence
    assert divergence is not None
    assert divergence.recorded is not None and divergence.recorded["kind"] == "OutputAccepted"
    assert divergence.replayed is not None and divergence.replayed["kind"] == "OutputRejected"


def test_the_double_returns_and_raises_what_each_attempt_did(store: BatonStore) -> None:
    goal = SHAPES["retried"](store)
    double = RecordedAgents(list(store.events(goal.id)))
    with pytest.raises(Exception, match="upstream reset") as raised:
        double.agent("a", 1)(agents.Text(text="retried"))
    assert type(raised.value).__name__ == "ConnectionError"
    assert double.agent("a", 2)(agents.Text(text="retried")) == {"text": "retried~"}
    with pytest.raises(NotRecorded):
        double.agent("a", 2)(agents.Text(text="retried"))  # each outcome is served once


def test_a_timed_out_attempt_is_an_outcome_the_double_replays(store: BatonStore) -> None:
    data = plan(task("a", "async_hangs", input={"text": "x"}, timeout_s=0.05,
                     retry={"max_attempts": 1}))
    goal = run(store, data)
    events = list(store.events(goal.id))
    assert "AgentTimedOut" in [type(event).__name__ for event in events]
    with pytest.raises(RecordedTimeout):  # the same outcome table as live runs and what-if
        RecordedAgents(events).agent("a", 1)(agents.Text(text="x"))
    assert reexecute(events, prepare_plan(data)).ok
