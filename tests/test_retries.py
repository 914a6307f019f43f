"""Retries through the real runner and store (SQLite and PostgreSQL): each kind of failed attempt
is retried under the task's policy, and each retry records the failure and when it is due."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from baton.store.eventstore import BatonStore
from tests import agents
from tests.support import events_of, kinds, plan, run, task


@pytest.fixture(autouse=True)
def _reset_agents() -> Iterator[None]:
    agents.CALLS.clear()
    yield


RETRY = {"max_attempts": 3, "backoff_s": 0.01, "multiplier": 2.0, "max_backoff_s": 1}


@pytest.mark.parametrize(
    ("agent", "extra", "failure"),
    [
        ("always_fails", {}, "RuntimeError: boom #1"),
        ("returns_wrong_type", {}, "text: Field required"),
        ("scored", {"min_confidence": 0.7, "on_low_confidence": "retry"},
         "confidence: 0.4 is below min_confidence 0.7"),
        ("hangs", {"timeout_s": 0.2}, "TimeoutError: no result within 0.2s"),
    ],
)
def test_each_kind_of_failure_is_retried_and_the_retry_says_what_it_answers(
    store: BatonStore, agent: str, extra: dict[str, object], failure: str
) -> None:
    data = plan(task("a", agent, input={"text": "$goal.text"}, retry=RETRY, **extra))
    goal = run(store, data, {"text": "x@0.4"})
    assert goal.state.status == "failed"
    assert goal.state.tasks["a"].attempts == 3
    retries = events_of(store, goal.id, "RetryScheduled")
    assert [r.attempt for r in retries] == [1, 2]
    assert failure in retries[0].failure
    for retry in retries:
        assert retry.rule == "retry.backoff"
        assert retry.due_at == retry.timestamp + timedelta(seconds=retry.delay_s)
        assert retry.policy["max_attempts"] == 3  # type: ignore[index]
    # exponential with ±10% derived jitter: 10 ms, then 20 ms
    assert 0.009 <= retries[0].delay_s <= 0.011 and 0.018 <= retries[1].delay_s <= 0.022
    failed = events_of(store, goal.id, "TaskFailed")[0]
    assert "retries exhausted after 3 failed attempts" in failed.reason
    assert failure.split(" #")[0] in failed.error
    # each next attempt started only once its backoff was due
    dispatched = events_of(store, goal.id, "TaskDispatched")
    for retry, after in zip(retries, dispatched[1:], strict=True):
        assert after.timestamp >= retry.due_at
    assert kinds(store, goal.id)[-1] == "GoalFailed"
