"""The walkthrough of docs/debugging.md and the README, on the travel example, on both stores:
a bad deploy makes pricing fail; audit explains it, replay reproduces it, what-if under
examples/travel/plan-escalate.yaml shows the other policy, a fork with the fixed agent completes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from baton.domain.audit import timeline
from baton.domain.goal import GoalEvent
from baton.domain.history import fork_goal
from baton.domain.replay import replay
from baton.domain.whatif import what_if
from baton.history.recorded import reexecute
from baton.runtime.loading import load_plan_file, prepare_plan
from baton.runtime.runner import utc_now
from baton.runtime.service import resume_goal, start_goal
from baton.store.eventstore import BatonStore
from examples.travel import agents

PLAN = "examples/travel/plan.yaml"
CHANGED = "examples/travel/plan-escalate.yaml"
TRIP = {"origin": "LHR", "destination": "Lisbon", "passengers": 2, "max_price": 150}


async def broken_price_trip(inp: agents.PriceIn) -> agents.PriceOut:
    raise RuntimeError("price feed: unexpected currency 'GBX'")


@pytest.fixture
def failed(store: BatonStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[GoalEvent]]:
    with monkeypatch.context() as patch:
        patch.setattr(agents, "price_trip", broken_price_trip)  # the bad deploy
        goal = start_goal(store, load_plan_file(PLAN), TRIP, goal_id="trip-0042")
    assert goal.state.status == "failed"  # and the fix is deployed again on leaving the block
    yield list(store.events("trip-0042"))


def test_audit_names_the_rule_the_policy_and_the_error(failed: list[GoalEvent]) -> None:
    decisions = timeline(failed, task="price")["decisions"]
    retries = [d for d in decisions if d["kind"] == "RetryScheduled"]
    assert [d["attempt"] for d in retries] == [1, 2]
    assert retries[0]["policy"]["max_attempts"] == 3 and retries[0]["policy"]["backoff_s"] == 0.5
    ended = next(d for d in decisions if d["kind"] == "TaskFailed")
    assert ended["rule"] == "on_failure.fail" and ended["policy"]["on_failure"] == "fail"
    assert ended["error"] == "RuntimeError: price feed: unexpected currency 'GBX'"


def test_replay_and_reexecution_reproduce_it(failed: list[GoalEvent]) -> None:
    loaded = prepare_plan(failed[0].plan)  # type: ignore[attr-defined]
    result = replay(failed, loaded.contracts)
    assert result.ok and result.events == len(failed)
    assert replay(failed, loaded.contracts, at=7).to_json()["state"]["tasks"]["price"] == {
        "status": "retry_wait", "attempts": 1}
    assert reexecute(failed, loaded).ok


def test_what_if_under_the_escalating_plan(failed: list[GoalEvent]) -> None:
    changed = load_plan_file(CHANGED)
    result = what_if(failed, changed.plan, changed.contracts)
    assert not result.ok
    first = result.differences[0]
    assert [d["kind"] for d in first.recorded] == ["RetryScheduled"]
    assert [d["kind"] for d in first.whatif] == ["TaskEscalated", "GoalSuspended"]
    assert result.state.status == "waiting"
    assert result.stopped is not None and "does not apply" in result.stopped["reason"]


def test_the_changed_plan_differs_from_the_example_only_in_what_it_says() -> None:
    with open(PLAN) as original, open(CHANGED) as other:
        plan, changed = yaml.safe_load(original), yaml.safe_load(other)
    price = next(t for t in changed["tasks"] if t["id"] == "price")
    assert (price.pop("retry"), price.pop("on_failure")) == ({"max_attempts": 2}, "escalate")
    assert changed == plan


def test_a_fork_before_the_failure_completes_with_the_fixed_agent(
    store: BatonStore, failed: list[GoalEvent]
) -> None:
    dispatched = next(e for e in failed
                      if type(e).__name__ == "TaskDispatched" and e.task == "price")
    at = dispatched.originator_version  # event 5 in the walkthrough
    store.save(fork_goal(failed, goal_id="trip-0042-fixed", at=at, now=utc_now()))
    goal = resume_goal(store, "trip-0042-fixed")
    assert goal.state.status == "completed"
    assert goal.state.output["total"] == 113.08
    assert goal.state.tasks["price"].attempts == 2  # the interrupted attempt, then the fixed one
    events = list(store.events("trip-0042-fixed"))
    result = replay(events, prepare_plan(events[0].plan).contracts)  # type: ignore[attr-defined]
    assert result.ok and result.inherited == at
