"""Goals run end to end through the runner, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from baton.domain.errors import GoalInputError
from baton.runtime.loading import load_plan_file
from baton.runtime.service import start_goal
from baton.store.eventstore import BatonStore
from tests import agents
from tests.support import events_of, kinds, plan, run, task


@pytest.fixture(autouse=True)
def _reset_agents() -> Iterator[None]:
    agents.CALLS.clear()
    agents.KEYS.clear()
    yield


def test_the_travel_example_completes(store: BatonStore) -> None:
    loaded = load_plan_file("examples/travel/plan.yaml")
    trip = {"origin": "LHR", "destination": "Lisbon", "passengers": 2}
    goal = start_goal(store, loaded, trip, goal_id="trip-lisbon")
    assert goal.state.status == "completed"
    assert goal.state.output["total"] == 113.08
    assert goal.state.output["confirmation"].startswith("BK-")
    stored = store.get("trip-lisbon")  # the same state, folded from the stored events
    assert stored.state.status == "completed" and stored.state.output == goal.state.output
    assert kinds(store, "trip-lisbon")[0] == "Started"
    price = events_of(store, "trip-lisbon", "AgentReturned")[1]
    assert price.task == "price" and price.usage == {"tokens": 360, "cost_usd": 0.00072}


def test_invalid_goal_input_stores_nothing(store: BatonStore) -> None:
    loaded = load_plan_file("examples/travel/plan.yaml")
    with pytest.raises(GoalInputError, match="passengers"):
        start_goal(store, loaded, {"origin": "LHR", "destination": "X", "passengers": 0},
                   goal_id="bad")
    assert not store.exists("bad")


def test_a_contract_violating_output_is_rejected_not_forwarded(store: BatonStore) -> None:
    data = plan(
        task("a", "returns_wrong_type", input={"text": "$goal.text"},
             retry={"max_attempts": 2, "backoff_s": 0}),
        task("b", "upper", input={"text": "$a.text"}),
    )
    goal = run(store, data, {"text": "hi"})
    assert goal.state.status == "failed"
    rejected = events_of(store, goal.id, "OutputRejected")
    assert len(rejected) == 2 and rejected[0].errors == ["text: Field required"]
    returned = events_of(store, goal.id, "AgentReturned")[0]
    assert returned.output == {"value": 3}  # the raw output is kept for the audit
    assert agents.CALLS["upper"] == 0  # never forwarded downstream
    assert goal.state.tasks["b"].status == "skipped"


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        ("always_fails", "RuntimeError: boom #1"),
        ("returns_none", "validation.contract: (root): Input should be a valid dictionary"),
        ("returns_unserialisable", "validation.serialisable: output of type dict is not"),
        ("returns_huge", "validation.serialisable: output is 2000011 bytes, over the 1000000"),
        ("raises_unprintable", "_Unprintable: <message unavailable: its __str__ raised"),
        ("negative_usage", "validation.serialisable: usage report {\"tokens\": -500, "
                           "\"cost_usd\": -1.0} is invalid: tokens must be 0 or more"),
        ("nonsense_usage", "validation.serialisable: usage report {\"tokens\": \"lots\"} is "
                           "invalid: tokens must be a whole number, not 'lots'"),
    ],
)
def test_bad_agents_are_recorded_failures(store: BatonStore, agent: str, expected: str) -> None:
    data = plan(task("a", agent, input={"text": "$goal.text"}, retry={"max_attempts": 1}))
    goal = run(store, data, {"text": "hi"})
    assert goal.state.status == "failed"
    failed = events_of(store, goal.id, "TaskFailed")[0]
    assert failed.error.startswith(expected), failed.error
    assert goal.state.used.tokens >= 0 and goal.state.used.cost_usd >= 0  # never given back


def test_a_model_returned_as_a_dict_is_accepted(store: BatonStore) -> None:
    goal = run(store, plan(task("a", "returns_dict", input={"text": "$goal.text"})),
               {"text": "hi"})
    assert goal.state.status == "completed"


@pytest.mark.parametrize("agent", ["hangs", "async_hangs"])
def test_an_agent_past_its_timeout_is_a_failed_attempt(store: BatonStore, agent: str) -> None:
    data = plan(task("a", agent, input={"text": "$goal.text"}, timeout_s=0.2,
                     retry={"max_attempts": 2, "backoff_s": 0}))
    goal = run(store, data, {"text": "hi"})
    assert goal.state.status == "failed"
    timed_out = events_of(store, goal.id, "AgentTimedOut")
    assert [(e.attempt, e.timeout_s) for e in timed_out] == [(1, 0.2), (2, 0.2)]
    assert "TimeoutError: no result within 0.2s" in goal.state.tasks["a"].last_error


def test_independent_sync_tasks_run_at_the_same_time(store: BatonStore) -> None:
    agents.BARRIER = threading.Barrier(3)
    data = plan(*(task(f"t{i}", "meets", input={"text": f"{i}"}) for i in range(3)))
    goal = run(store, data, {}, concurrency=3)
    assert goal.state.status == "completed", goal.state.reason  # each waited for the others


def test_independent_async_tasks_run_at_the_same_time(store: BatonStore) -> None:
    agents._ASYNC_BARRIER = None
    data = plan(*(task(f"t{i}", "async_meets", input={"text": f"{i}"}) for i in range(2)))
    goal = run(store, data, {}, concurrency=2)
    assert goal.state.status == "completed", goal.state.reason


def test_async_agents_share_an_event_loop(store: BatonStore) -> None:
    data = plan(*(task(f"t{i}", "async_upper", input={"text": f"x{i}"}) for i in range(4)),
                output={"t3": "$t3.text"})
    goal = run(store, data, {}, concurrency=4)
    assert goal.state.output == {"t3": "X3"}


def test_concurrency_one_runs_tasks_one_after_another(store: BatonStore) -> None:
    data = plan(*(task(f"t{i}", "upper", input={"text": f"{i}"}) for i in range(3)))
    goal = run(store, data, {}, concurrency=1)
    order = kinds(store, goal.id)
    # never two dispatches without an outcome between them
    in_flight = 0
    for kind in order:
        in_flight += kind == "TaskDispatched"
        in_flight -= kind == "AgentReturned"
        assert in_flight <= 1


def test_retries_reuse_the_idempotency_key(store: BatonStore) -> None:
    data = plan(task("pay", "flaky_book", input={"text": "$goal.text"},
                     side_effects="idempotent", retry={"backoff_s": 0}))
    goal = run(store, data, {"text": "hi"})
    assert goal.state.status == "completed"
    assert len(agents.KEYS) == 2 and agents.KEYS[0] == agents.KEYS[1]
    dispatched = events_of(store, goal.id, "TaskDispatched")
    assert {d.idempotency_key for d in dispatched} == {agents.KEYS[0]}


def test_usage_counts_against_the_token_budget(store: BatonStore) -> None:
    tasks: list[dict[str, Any]] = [task("t0", "costly", input={"text": "$goal.text"})]
    tasks += [task(f"t{i}", "costly", input={"text": f"$t{i - 1}.text"}) for i in range(1, 5)]
    goal = run(store, plan(*tasks, budget={"max_tokens": 250}), {"text": "hi"})
    assert goal.state.status == "failed"
    assert agents.CALLS["costly"] == 3  # 0, 100, 200 tokens used before each; then 300 >= 250
    exhausted = events_of(store, goal.id, "BudgetExhausted")[0]
    assert (exhausted.budget, exhausted.limit, exhausted.used) == ("tokens", 250, 300)
    assert goal.state.used.tokens == 300 and round(goal.state.used.cost_usd, 6) == 0.03


def test_an_always_failing_agent_stops_exactly_at_the_attempt_budget(store: BatonStore) -> None:
    data = plan(task("a", "always_fails", input={"text": "$goal.text"},
                     retry={"max_attempts": 100, "backoff_s": 0}), budget={"max_attempts": 7})
    goal = run(store, data, {"text": "hi"})
    assert agents.CALLS["always_fails"] == 7
    assert goal.state.status == "failed" and "attempts budget exhausted" in goal.state.reason


def test_the_output_cap_is_configurable(store: BatonStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_MAX_OUTPUT_BYTES", "10")
    goal = run(store, plan(task("a", "upper", input={"text": "$goal.text"},
                                retry={"max_attempts": 1})), {"text": "a longer text"})
    assert goal.state.status == "failed"
    assert "over the 10-byte cap" in goal.state.tasks["a"].last_error
