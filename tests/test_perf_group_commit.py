"""Group commit: completions already queued are recorded together and saved in one transaction.

The pool's completion queue is gated so that several completions are deterministically waiting
when the runner wakes up (no sleeps, no timing).
"""

from __future__ import annotations

import itertools
import queue
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import baton.runtime.runner
from baton.domain.replay import replay
from baton.runtime.calls import CallPool, Completion
from baton.runtime.service import cancel_goal
from baton.store.eventstore import BatonStore, open_store
from tests.replay_support import contracts_of
from tests.support import plan, run, task

WIDTH = 3


class _GatedQueue(queue.Queue[Completion]):
    """Holds back the first `get` until `count` completions are queued."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.opened = False

    def get(self, block: bool = True, timeout: float | None = None) -> Completion:
        if not self.opened:
            with self.not_empty:
                ready = self.not_empty.wait_for(lambda: self._qsize() >= self.count, 30)
            assert ready, f"never saw {self.count} completions queued at once"
            self.opened = True
        return super().get(block, timeout)


class _GatedPool(CallPool):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.completions = _GatedQueue(WIDTH)  # type: ignore[assignment]


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baton.runtime.runner, "CallPool", _GatedPool)


@pytest.fixture
def saves(store: BatonStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The goal version after each save the runner makes."""
    versions: list[int] = []
    real = store.save

    def save(goal: Any) -> Any:
        saved = real(goal)
        versions.append(goal.version)
        return saved

    monkeypatch.setattr(store, "save", save)
    yield versions


def _fanout() -> dict[str, Any]:
    return plan(*(task(f"t{i}", "upper", input={"text": f"x{i}"}) for i in range(WIDTH)))


def _names(store: BatonStore, goal_id: str) -> list[str]:
    return [type(event).__name__ for event in store.events(goal_id)]


@pytest.mark.usefixtures("gated")
def test_queued_completions_are_recorded_in_one_save(
    store: BatonStore, saves: list[int]
) -> None:
    goal = run(store, _fanout(), {}, concurrency=WIDTH)
    assert goal.state.status == "completed", goal.state.reason
    names = _names(store, goal.id)
    dispatched = 1 + WIDTH  # Started, TaskDispatched x3 (each holding its readiness)
    assert names[:dispatched] == ["Started", *["TaskDispatched"] * WIDTH]
    # each observation is followed by its own decisions, the last one's include the goal's end
    assert names[dispatched:] == [*["AgentReturned", "OutputAccepted"] * WIDTH, "GoalCompleted"]
    assert saves == [dispatched, len(names)]  # the dispatches first, then one save for the rest
    events = store.events(goal.id)
    result = replay(events, contracts_of(events))
    assert result.ok, result.divergence
    assert result.decisions == len(names) - 1 - WIDTH


@pytest.mark.usefixtures("gated")
def test_a_conflicting_batch_is_recorded_again_on_top_of_the_other_write(
    store: BatonStore, store_url: str, saves: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = store.save
    other = threading.Event()

    def save(goal: Any) -> Any:
        if saves and not other.is_set():  # before the batch's save: another process cancels
            other.set()
            elsewhere = open_store(store_url)
            try:
                cancel_goal(elsewhere, goal.id, reason="not needed", by="ops")
            finally:
                elsewhere.close()
        saved = real(goal)
        saves.append(goal.version)
        return saved

    monkeypatch.setattr(store, "save", save)
    goal = run(store, _fanout(), {}, concurrency=WIDTH)
    assert goal.state.status == "cancelled"
    names = _names(store, goal.id)
    cancelled = names.index("GoalCancelled")
    # the whole batch went on top of the cancellation, as late results that decide ignores
    assert names[cancelled + 1 :] == ["AgentReturned"] * WIDTH
    assert "OutputAccepted" not in names
    events = store.events(goal.id)
    assert replay(events, contracts_of(events)).ok


def test_a_retry_without_backoff_is_saved_with_the_failed_attempt(
    store: BatonStore, saves: list[int]
) -> None:
    """The failed attempt, the retry decision and the next dispatch: one transaction (the
    failure is durable, and the new dispatch is on disk before the agent runs again)."""
    data = plan(task("t", "flaky", input={"text": uuid.uuid4().hex},  # fails on its first call
                     retry={"max_attempts": 2, "backoff_s": 0}))
    goal = run(store, data, {})
    assert goal.state.status == "completed", goal.state.reason
    events = store.events(goal.id)
    cuts = [0, *saves]
    batches = [[type(e).__name__ for e in events[a:b]] for a, b in itertools.pairwise(cuts)]
    assert batches == [
        ["Started", "TaskDispatched"],
        ["AgentRaised", "RetryScheduled", "TaskDispatched"],
        ["AgentReturned", "OutputAccepted", "GoalCompleted"],
    ]
