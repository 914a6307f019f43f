"""Budgets, abandonment, escalation and cancellation through the real runner and store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from baton.runtime.service import resolve_task, resume_goal
from baton.store.eventstore import BatonStore, open_store
from tests import agents
from tests.cli_support import ROOT, baton
from tests.support import events_of, kinds, plan, run, task


@pytest.fixture(autouse=True)
def _reset_agents() -> Iterator[None]:
    agents.CALLS.clear()
    yield


def test_the_deadline_stops_a_goal_that_runs_too_long(store: BatonStore) -> None:
    data = plan(task("a", "hangs", input={"text": "$goal.text"}, timeout_s=20),
                budget={"deadline_s": 0.3})
    goal = run(store, data, {"text": "hi"})
    assert goal.state.status == "failed"
    exhausted = events_of(store, goal.id, "BudgetExhausted")[0]
    assert exhausted.budget == "deadline_s" and exhausted.used >= 0.3
    assert goal.state.tasks["a"].status == "cancelled"
    assert "ClockTicked" in kinds(store, goal.id)


def test_a_call_that_returns_as_its_time_runs_out_counts_as_returned_once(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An async call finishing between the runner's timeout and its abandoning the call was
    recorded as timed out (retried, its spend counted again) and as returned. Now the first
    to claim the call decides: here the result, recorded once, and the task is not retried."""
    from baton.runtime.calls import CallPool

    abandon = CallPool.abandon

    def abandon_after_it_returned(pool: CallPool, task_id: str, attempt: int) -> object:
        agents.TIME_RAN_OUT.set()  # the timeout fired: the agent returns now, in the window
        deadline = time.monotonic() + 10
        while (task_id, attempt) in pool._spending and time.monotonic() < deadline:
            time.sleep(0.005)  # until its completion has claimed the call
        return abandon(pool, task_id, attempt)

    agents.TIME_RAN_OUT.clear()
    monkeypatch.setattr(CallPool, "abandon", abandon_after_it_returned)
    data = plan(task("a", "async_returns_when_told", input={"text": "$goal.text"},
                     timeout_s=0.2, retry={"max_attempts": 3, "backoff_s": 0}))
    goal = run(store, data, {"text": "hi"})
    assert goal.state.status == "completed", kinds(store, goal.id)
    assert goal.state.output == {"a": {"text": "hi (just in time)"}}
    assert "AgentTimedOut" not in kinds(store, goal.id)
    assert [(e.task, e.attempt) for e in events_of(store, goal.id, "AgentReturned")] == [("a", 1)]
    assert agents.CALLS["async_returns_when_told"] == 1


def test_a_call_abandoned_as_it_times_out_is_recorded_as_timed_out_and_its_late_result_dropped(
    store: BatonStore,
) -> None:
    """The other order of the race above: the timeout claims the call first. The agent swallows
    its cancellation and returns a result all the same; that result is dropped, never recorded
    beside the timeout, and the retry's is the task's output."""
    data = plan(task("a", "async_ignores_cancel_once", input={"text": "$goal.text"},
                     timeout_s=0.2, retry={"max_attempts": 2, "backoff_s": 0}))
    goal = run(store, data, {"text": "hi"})
    assert goal.state.status == "completed", kinds(store, goal.id)
    assert goal.state.output == {"a": {"text": "hi (in time)"}}
    assert [e.attempt for e in events_of(store, goal.id, "AgentTimedOut")] == [1]
    assert [e.attempt for e in events_of(store, goal.id, "AgentReturned")] == [2]
    assert agents.CALLS["async_ignores_cancel_once"] == 2


def test_a_timeout_longer_than_any_wait_runs_like_no_timeout(store: BatonStore) -> None:
    # `timeout_s: 1e300` passes the plan check (a number > 0) and means "never": the runner's
    # timed wait raised OverflowError (exit 70, the goal left running) on the first dispatch.
    data = plan(task("a", "upper", input={"text": "$goal.text"}, timeout_s=1e300),
                task("b", "exclaim", input={"text": "$a.text"}, timeout_s=1e300))
    goal = run(store, data, {"text": "hi"})
    assert (goal.state.status, goal.state.output) == ("completed", {"b": {"text": "HI!"}})


def test_an_exhausted_budget_can_wait_for_a_human(store: BatonStore) -> None:
    data = plan(task("a", "flaky", input={"text": "$goal.text"}, retry={"backoff_s": 0}),
                budget={"max_attempts": 1, "on_exhausted": "escalate"})
    goal = run(store, data, {"text": "x"})
    assert goal.state.status == "waiting"
    assert goal.state.tasks["a"].status == "escalated"
    resolve_task(store, goal.id, "a", action="retry", reason="worth one more", by="ana")
    goal = resume_goal(store, goal.id)
    assert goal.state.status == "completed" and goal.state.output == {"a": {"text": "x~"}}
    human = events_of(store, goal.id, "HumanResolved")[0]
    assert (human.action, human.by, human.reason) == ("retry", "ana", "worth one more")


def test_abandon_skips_only_the_dependants(store: BatonStore) -> None:
    data = plan(
        task("a", "always_fails", input={"text": "$goal.text"}, on_failure="abandon",
             retry={"max_attempts": 2, "backoff_s": 0}),
        task("b", "upper", input={"text": "$a.text"}),
        task("c", "exclaim", input={"text": "$goal.text"}),
        output={"c": "$c.text"},
    )
    goal = run(store, data, {"text": "hi"})
    assert goal.state.status == "completed" and goal.state.output == {"c": "hi!"}
    statuses = {tid: t.status for tid, t in goal.state.tasks.items()}
    assert statuses == {"a": "abandoned", "b": "skipped", "c": "succeeded"}
    skipped = events_of(store, goal.id, "TaskSkipped")[0]
    assert skipped.because == "a" and "'a' was abandoned" in skipped.reason
    assert agents.CALLS["upper"] == 0


def test_a_human_output_is_recorded_with_who_and_why(store: BatonStore) -> None:
    data = plan(task("a", "always_fails", input={"text": "$goal.text"}, on_failure="escalate",
                     retry={"max_attempts": 1}),
                task("b", "upper", input={"text": "$a.text"}), output="$b.text")
    goal = run(store, data, {"text": "hi"})
    assert goal.state.status == "waiting"
    resolve_task(store, goal.id, "a", action="output", output={"text": "by hand"},
                 reason="fixed the data", by="ana")
    goal = resume_goal(store, goal.id)
    assert goal.state.status == "completed" and goal.state.output == "BY HAND"
    accepted = events_of(store, goal.id, "OutputAccepted")[0]
    assert accepted.rule == "human.output" and "ana: fixed the data" in accepted.reason


def _wait_for(predicate: object, what: str) -> None:
    for _ in range(1000):
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_cancel_from_another_process_stops_the_run(store_url: str, tmp_path: Path) -> None:
    data = plan(task("slow", "waits_for_file", input={"text": "$goal.text"}),
                task("after", "upper", input={"text": "$slow.text"}))
    plan_file = tmp_path / "slow.yaml"
    plan_file.write_text(yaml.safe_dump(data))
    env = {"BATON_TEST_DIR": str(tmp_path), "BATON_STORE": store_url}
    runner = subprocess.Popen(
        [sys.executable, "-m", "baton.cli", "run", str(plan_file), "--input",
         '{"text": "x"}', "--goal-id", "slow", "--json"],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for(lambda: (tmp_path / "calls.jsonl").exists(), "the agent to start")
        cancelled = baton("cancel", "slow", "--reason", "not needed", "--by", "ops",
                          store=store_url)
        assert cancelled.code == 0, cancelled.err  # the cancel succeeded
        (tmp_path / "release").write_text("go")
        _, err = runner.communicate(timeout=60)
    finally:
        runner.kill()
    assert runner.returncode == 1, err
    store = open_store(store_url)
    try:
        names = kinds(store, "slow")
        assert names.index("GoalCancelled") < names.index("AgentReturned")  # recorded late...
        assert "OutputAccepted" not in names  # ...and ignored
        assert store.get("slow").state.tasks["after"].status == "cancelled"
    finally:
        store.close()
