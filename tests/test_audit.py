"""`baton audit`: every decision in order, with its rule, reason and policy values, beside the
observation that caused it; and `baton graph GOAL` with each task's status."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from baton.domain.audit import timeline
from baton.store.eventstore import BatonStore, open_store
from tests import agents
from tests.cli_support import baton
from tests.replay_support import SHAPES
from tests.support import kinds


@pytest.fixture(autouse=True)
def _reset_agents() -> Iterator[None]:
    agents.CALLS.clear()
    yield


def test_every_decision_is_listed_in_order_with_its_cause(store: BatonStore) -> None:
    goal = SHAPES["escalated"](store)
    audit = timeline(store.events(goal.id))
    assert audit["goal_id"] == goal.id
    all_kinds = kinds(store, goal.id)
    decisions = audit["decisions"]
    assert [d["seq"] for d in decisions] == sorted(d["seq"] for d in decisions)
    assert len(decisions) + len(audit["observations"]) == len(all_kinds)
    for decision in decisions:
        assert list(decision)[:8] == ["seq", "at", "kind", "task", "attempt", "rule", "reason",
                                      "policy"]
        assert decision["kind"] == all_kinds[decision["seq"] - 1]
        assert decision["rule"] and decision["reason"]
        cause = next(o for o in audit["observations"] if o["seq"] == decision["caused_by"])
        assert decision["seq"] in cause["caused"] and cause["seq"] < decision["seq"]


def test_the_reason_carries_the_failure_the_rule_the_policy_and_the_human(
    store: BatonStore,
) -> None:
    goal = SHAPES["escalated"](store)
    audit = timeline(store.events(goal.id))
    by_kind: dict[tuple[str, str], dict] = {}  # type: ignore[type-arg]
    for decision in audit["decisions"]:
        by_kind.setdefault((decision["kind"], decision["task"]), decision)  # the first of each
    retry = by_kind[("RetryScheduled", "a")]
    assert retry["rule"] == "retry.backoff" and retry["attempt"] == 1
    assert retry["policy"]["max_attempts"] == 2
    assert "RuntimeError: boom" in retry["failure"]
    escalated = by_kind[("TaskEscalated", "s")]
    assert escalated["rule"] == "validation.confidence"
    assert escalated["policy"] == {"min_confidence": 0.7, "on_low_confidence": "escalate"}
    assert "0.4 is below min_confidence 0.7" in escalated["reason"]
    humans = [o for o in audit["observations"] if o["kind"] == "HumanResolved"]
    assert next((h["by"], h["action"], h["reason"]) for h in humans) == (
        "ana", "retry", "one more go")
    ready = next(d for d in audit["decisions"] if d["rule"] == "human.retry")
    assert "ana: one more go" in ready["reason"] and ready["caused_by"] == humans[0]["seq"]
    raised = [o for o in audit["observations"] if o["kind"] == "AgentRaised"]
    assert raised[0]["error_type"] == "RuntimeError" and "duration_ms" in raised[0]


def test_budget_figures_are_in_the_decision(store: BatonStore) -> None:
    from tests.support import plan, run, task

    data = plan(*(task(f"t{i}", "costly", input={"text": "$goal.text"}) for i in range(3)),
                budget={"max_tokens": 150})
    goal = run(store, data, {"text": "x"}, concurrency=1)
    exhausted = next(d for d in timeline(store.events(goal.id))["decisions"]
                     if d["kind"] == "BudgetExhausted")
    assert exhausted["rule"] == "budget.tokens"
    assert (exhausted["limit"], exhausted["used"]) == (150, 200)  # two tasks ran, 100 each
    assert exhausted["policy"]["max_tokens"] == 150


def test_task_filter_keeps_the_task_and_what_caused_its_decisions(store: BatonStore) -> None:
    goal = SHAPES["completed"](store)
    audit = timeline(store.events(goal.id), task="b")
    assert {d["task"] for d in audit["decisions"]} == {"b"}
    causes = {o["seq"]: o for o in audit["observations"]}
    assert all(d["caused_by"] in causes for d in audit["decisions"])
    # b became ready because a returned: that observation is shown although it is a's.
    assert any(o["task"] == "a" and o["kind"] == "AgentReturned" for o in causes.values())


def test_audit_cli_readable_and_json(store_url: str) -> None:
    store = open_store(store_url)
    try:
        SHAPES["retried"](store)
    finally:
        store.close()
    as_json = baton("audit", "retried", "--json", store=store_url)
    assert as_json.code == 0
    data = as_json.json()
    assert set(data) >= {"goal_id", "decisions"}
    assert {"seq", "at", "kind", "task", "attempt", "reason"} <= set(data["decisions"][0])
    readable = baton("audit", "retried", store=store_url)
    assert readable.code == 0
    for text in ("▸ AgentRaised", "ConnectionError: upstream reset", "RetryScheduled",
                 "retry.backoff", "backoff elapsed", "GoalCompleted",
                 "(retry.backoff_elapsed);"):  # the readiness a dispatch holds
        assert text in readable.out
    only_b = baton("audit", "retried", "--task", "b", store=store_url)
    assert "RetryScheduled" not in only_b.out and "b #1" in only_b.out
    missing = baton("audit", "nope", store=store_url)
    assert missing.code == 2 and "no goal 'nope'" in missing.err
    unknown = baton("audit", "retried", "--task", "nope", store=store_url)
    assert unknown.code == 2
    assert unknown.err.strip() == "baton: error: --task nope: goal retried has no such task (a, b)"


def test_graph_of_a_goal_shows_each_tasks_status(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    try:
        SHAPES["cancelled"](store)
    finally:
        store.close()
    mermaid = baton("graph", "cancelled", store=sqlite_url)
    assert mermaid.code == 0, mermaid.err
    assert "a --> b" in mermaid.out
    assert "class a abandoned" in mermaid.out
    assert "class b skipped" in mermaid.out
    assert "class c cancelled" in mermaid.out
    dot = baton("graph", "cancelled", "--format", "dot", store=sqlite_url)
    assert '"a" -> "b";' in dot.out
    assert 'a\\n(always_fails) · abandoned' in dot.out and 'fillcolor="plum"' in dot.out
