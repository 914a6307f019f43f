"""Usage v2 (input/output tokens, model, requests, cost source) from any agent, and v1 histories."""

from __future__ import annotations

from typing import Any

import pytest

from baton.domain.goal import Goal
from tests.support import as_recorded_before, events_of, run


def one_task(agent: str) -> dict:
    return {"version": 1, "name": "usage", "agents": {"a": f"tests.llm_models:{agent}"},
            "defaults": {"retry": {"max_attempts": 2, "backoff_s": 0, "jitter": 0}},
            "tasks": [{"id": "t", "agent": "a", "input": {"item": "x"}}]}


def test_tokens_without_a_cost_are_priced_and_the_price_table_is_recorded(store) -> None:
    pytest.importorskip("genai_prices")
    from baton.llm.pricing import price_tokens

    goal = run(store, one_task("reports_tokens_only"))
    [returned] = events_of(store, goal.id, "AgentReturned")
    expected = price_tokens("openai:gpt-4o-mini", input_tokens=1000, output_tokens=500)
    assert expected is not None
    assert returned.usage["cost_usd"] == pytest.approx(expected[0])
    assert returned.usage["cost_source"] == expected[1]
    assert expected[1].startswith("genai-prices ")
    assert (returned.usage["tokens"], returned.usage["model"]) == (1500, "openai:gpt-4o-mini")
    assert goal.state.used.cost_usd == pytest.approx(expected[0])


def test_a_reported_cost_always_wins(store) -> None:
    goal = run(store, one_task("reports_its_cost"))
    [returned] = events_of(store, goal.id, "AgentReturned")
    assert (returned.usage["cost_usd"], returned.usage["cost_source"]) == (0.5, "reported")


def test_a_failure_carries_its_usage_and_not_before_into_the_retry(store) -> None:
    data = one_task("rate_limited") | {"defaults": {"retry": {"max_attempts": 1}}}
    goal = run(store, data)
    [raised] = events_of(store, goal.id, "AgentRaised")
    assert raised.retry_after_s == 2.5
    assert raised.usage["requests"] == 1 and raised.usage["tokens"] == 10


def test_a_v1_usage_payload_upcasts_with_the_new_figures_unknown(sqlite_url) -> None:
    from baton.store.eventstore import open_store

    def as_release_0_1(state: dict[str, Any]) -> None:
        assert state.pop("class_version") == 2
        state["usage"] = {"tokens": 7, "cost_usd": 0.25}  # as release 0.1 recorded it

    store = open_store(sqlite_url)
    try:
        goal = run(store, one_task("reports_its_cost"))
        [event] = events_of(store, goal.id, "AgentReturned")
        upcast = as_recorded_before(store, event, as_release_0_1)
    finally:
        store.close()
    assert isinstance(upcast, Goal.AgentReturned)
    assert upcast.usage == {"tokens": 7, "cost_usd": 0.25, "input_tokens": None,
                            "output_tokens": None, "cache_read_tokens": None,
                            "cache_write_tokens": None, "requests": None, "model": None,
                            "cost_source": None}
    state = {"usage": None}
    Goal.AgentRaised.upcast_v1_v2(state)
    assert state == {"usage": None, "retry_after_s": None}


def test_a_v1_timeout_upcasts_with_no_usage_and_folds_as_before(sqlite_url) -> None:
    from baton.store.eventstore import open_store

    def as_before_v2(state: dict[str, Any]) -> None:
        assert state.pop("class_version") == 2
        state.pop("usage")  # v1 timeouts recorded no usage

    data = {"version": 1, "name": "hangs", "agents": {"a": "tests.agents:async_hangs"},
            "tasks": [{"id": "t", "agent": "a", "input": {"text": "x"}, "timeout_s": 0.05,
                       "retry": {"max_attempts": 1}}]}
    store = open_store(sqlite_url)
    try:
        goal = run(store, data)
        [event] = events_of(store, goal.id, "AgentTimedOut")
        assert event.usage is None  # an agent that reports no spend so far: nothing recorded
        upcast = as_recorded_before(store, event, as_before_v2)
    finally:
        store.close()
    assert isinstance(upcast, Goal.AgentTimedOut) and upcast.usage is None
    assert (upcast.task, upcast.attempt, upcast.timeout_s) == ("t", 1, 0.05)


def test_the_replay_view_shows_what_a_timed_out_attempt_spent() -> None:
    from baton.cli.debug_view import _observed

    line = _observed({"kind": "AgentTimedOut", "timeout_s": 0.5,
                      "usage": {"tokens": 120, "cost_usd": 0.25}})
    assert line == "no result within 0.5s · 120 tokens $0.25"
    assert _observed({"kind": "AgentTimedOut", "timeout_s": 0.5, "usage": None}) == (
        "no result within 0.5s")
