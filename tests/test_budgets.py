"""Budgets through the real runner and store (SQLite and PostgreSQL): the cost cap, and the
reservation of declared estimates that keeps parallel attempts from jointly overshooting."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from baton.store.eventstore import BatonStore
from tests import agents
from tests.support import events_of, plan, run, task


@pytest.fixture(autouse=True)
def _reset_agents() -> Iterator[None]:
    agents.CALLS.clear()
    yield


def test_the_cost_budget_stops_before_the_attempt_that_would_break_it(store: BatonStore) -> None:
    tasks: list[dict[str, Any]] = [task("t0", "costly", input={"text": "$goal.text"})]
    tasks += [task(f"t{i}", "costly", input={"text": f"$t{i - 1}.text"}) for i in range(1, 5)]
    goal = run(store, plan(*tasks, budget={"max_cost_usd": 0.025}), {"text": "hi"})
    assert goal.state.status == "failed"
    assert agents.CALLS["costly"] == 3  # $0, $0.01, $0.02 spent before each; then $0.03
    exhausted = events_of(store, goal.id, "BudgetExhausted")[0]
    assert (exhausted.budget, exhausted.limit, exhausted.rule) == ("cost_usd", 0.025,
                                                                  "budget.cost_usd")
    assert exhausted.used == pytest.approx(0.03)
    assert "cost_usd budget exhausted" in goal.state.reason
    assert [t.status for t in goal.state.tasks.values()][3:] == ["skipped", "skipped"]


@pytest.mark.parametrize(("estimate", "calls", "tokens"), [(None, 3, 300), (100, 2, 200)])
def test_estimates_are_reserved_so_parallel_attempts_cannot_jointly_overshoot(
    store: BatonStore, estimate: int | None, calls: int, tokens: int
) -> None:
    """Three independent tasks of 100 tokens each under a 250-token cap, all ready at once.
    Without estimates every check sees 0 spent, all three start and the goal spends 300; with
    `estimate: {tokens: 100}` the third is not started while two reservations are held."""
    extra = {"estimate": {"tokens": estimate}} if estimate is not None else {}
    data = plan(*(task(f"t{i}", "costly", input={"text": "$goal.text"}, **extra)
                  for i in range(3)), budget={"max_tokens": 250})
    goal = run(store, data, {"text": "x"}, concurrency=3)
    assert agents.CALLS["costly"] == calls
    assert goal.state.used.tokens == tokens
    dispatched = events_of(store, goal.id, "TaskDispatched")
    assert len(dispatched) == calls
    if estimate is not None:
        assert goal.state.status == "failed"
        assert {d.reserved["tokens"] for d in dispatched} == {100}  # type: ignore[index]
        exhausted = events_of(store, goal.id, "BudgetExhausted")[0]
        assert exhausted.budget == "tokens" and exhausted.task == "t2"


def _estimated_chain(cap: int) -> dict[str, Any]:
    """Three 100-token tasks in a row, each estimating 100, under a cap of `cap` tokens."""
    tasks: list[dict[str, Any]] = [
        task("t0", "costly", input={"text": "$goal.text"}, estimate={"tokens": 100})]
    tasks += [task(f"t{i}", "costly", input={"text": f"$t{i - 1}.text"},
                   estimate={"tokens": 100}) for i in (1, 2)]
    return plan(*tasks, budget={"max_tokens": cap})


def test_a_breach_the_estimate_causes_says_so_in_the_audit(store: BatonStore) -> None:
    from baton.domain.replay import replay
    from tests.replay_support import contracts_of

    goal = run(store, _estimated_chain(250), {"text": "x"})
    assert goal.state.status == "failed"
    [exhausted] = events_of(store, goal.id, "BudgetExhausted")
    # 200 of 250 spent is not exhausted by itself: the reason says what would pass the cap.
    assert exhausted.reason == ("tokens budget exhausted: 200 used of 250, and the next "
                                "attempt's estimate (100) would pass it; 't2' not started")
    assert goal.state.reason == ("tokens budget exhausted: 200 used of 250, and the next "
                                 "attempt's estimate (100) would pass it")
    events = list(store.events(goal.id))
    assert replay(events, contracts_of(events)).ok


def test_a_goal_decided_under_rules_4_keeps_its_budget_wording(store: BatonStore) -> None:
    from baton.domain.replay import replay
    from tests.replay_support import contracts_of, decided_under

    with decided_under(4):
        goal = run(store, _estimated_chain(250), {"text": "x"})
    [exhausted] = events_of(store, goal.id, "BudgetExhausted")
    assert exhausted.reason == "tokens budget exhausted: 200 used of 250; 't2' not started"
    events = list(store.events(goal.id))
    assert replay(events, contracts_of(events)).ok  # today's code re-decides it the same
