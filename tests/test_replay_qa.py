"""Findings of a QA pass over debugging a failed run: trace, re-execution and what-if of the
histories an on-call engineer meets (a failed goal, a contract changed since, a fork)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from baton.domain.errors import PlanError
from baton.domain.history import collect, fold, fork_goal, state_summary
from baton.domain.replay import replay
from baton.domain.whatif import what_if
from baton.history.recorded import reexecute
from baton.history.runfile import read_run
from baton.history.service import History, replay_history
from baton.runtime.loading import prepare_plan
from baton.runtime.service import CommandError, fork_from
from baton.store.eventstore import BatonStore
from baton.telemetry.spans import goal_spans
from tests import agents
from tests.support import load, plan, run, task

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("golden", ["failed.jsonl", "failed-rules3.jsonl",
                                    "budgeted-rules5.jsonl"])
def test_the_trace_of_a_failed_goal_ends_its_goal_span_as_failed(golden: str) -> None:
    # GoalFailed names the task that failed the goal: it was filed on that task's span, and the
    # goal span stayed `running` and open (never exported live, shown running by `baton trace`).
    run = read_run(GOLDEN / golden)
    spans = goal_spans(run.events)
    goal = next(s for s in spans if s.parent_id is None)
    assert run.events[-1].__class__.__name__ == "GoalFailed"
    assert goal.attributes["baton.status"] == "failed"
    assert "baton.open" not in goal.attributes
    assert goal.end_ns is not None and goal.error == run.events[-1].reason  # type: ignore[attr-defined]
    assert "GoalFailed" in [e.name for e in goal.events]
    assert not any("GoalFailed" in [e.name for e in s.events] for s in spans if s is not goal)


def test_a_diverged_reexecution_reports_the_state_after_the_events_it_counts() -> None:
    # `state after event N` is printed under a re-execution that diverged: it showed the new
    # run's state, which had already applied today's divergent decisions (a task `retry_wait`
    # "after event 3", when after event 3 it was still running). Plain replay shows the state
    # after event N; re-execution now does too.
    run = read_run(GOLDEN / "completed.jsonl")
    loaded = prepare_plan(run.plan)

    class Stricter(BaseModel):
        text: str
        checked: bool  # required today; the recorded output lacks it

    contract = loaded.contracts["upper"]
    loaded.contracts["upper"] = type(contract)(contract.input_model, Stricter)
    result = reexecute(run.events, loaded)
    assert result.divergence is not None
    assert result.divergence.recorded is not None
    assert result.divergence.recorded["kind"] == "OutputAccepted"
    assert result.events == result.divergence.seq - 1
    expected = state_summary(fold(run.events[: result.events]).state)
    assert state_summary(result.state) == expected
    assert expected["tasks"]["a"]["status"] == "running"
    plain = replay(run.events, loaded.contracts)
    assert plain.divergence is not None and plain.divergence.seq == result.divergence.seq
    assert state_summary(plain.state) == expected


class _Renamed(BaseModel):
    shout: str  # was `text`: a field renamed since the run


def _upper_renamed(inp: agents.Text) -> _Renamed:
    return _Renamed(shout=inp.text.upper())


def test_reexecute_of_a_plan_today_s_contracts_break_does_not_point_at_plain_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A field renamed in an output model: the recorded plan's binding `$a.text` no longer
    # type-checks. Plain replay refuses it (exit 2, the plan's error); --reexecute said it
    # "needs their modules ... plain `replay` checks against the schemas recorded in the run",
    # which sent the user to a command that fails the same way.
    monkeypatch.setattr(agents, "upper", _upper_renamed)
    run = read_run(GOLDEN / "completed-rules3.jsonl")  # records schemas
    history = History(run.goal_id, run.events, source="completed.jsonl")
    with pytest.raises(PlanError) as plain:
        replay_history(history)
    with pytest.raises(PlanError) as again:
        replay_history(history, reexecute_agents=True)
    assert "has no field 'text'" in str(again.value)
    assert "plain `replay`" not in str(again.value)
    assert str(again.value) == str(plain.value)


def test_reexecute_of_a_goal_whose_agent_is_gone_still_points_at_plain_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(agents, "upper")  # the agent renamed or deleted since the run
    run = read_run(GOLDEN / "completed-rules3.jsonl")  # records schemas
    history = History(run.goal_id, run.events, source="completed.jsonl")
    with pytest.raises(CommandError, match="plain `replay` checks against the schemas"):
        replay_history(history, reexecute_agents=True)
    result = replay_history(history)
    assert result.ok and getattr(result, "contracts_source", "").startswith(
        "agent modules not importable")


def test_what_if_on_a_fork_compares_what_the_fork_decided_not_its_parent_s_history(
    store: BatonStore,
) -> None:
    # A fork's first events were decided under its parent's id, from which idempotency keys
    # and backoff jitter derive. What-if re-decided them under the fork's id, so the fork's own
    # unchanged plan "decided differently" at its first dispatch and at every backoff (exit 1).
    data = plan(task("a", "always_fails", input={"text": "$goal.text"},
                     retry={"max_attempts": 3, "backoff_s": 0.01}),
                task("b", "upper", input={"text": "$a.text"}))
    parent = list(store.events(run(store, data, {"text": "x"}, goal_id="parent").id))
    at = next(e.originator_version for e in parent if type(e).__name__ == "RetryScheduled")
    fork = fork_from(store, parent, at=at, goal_id="fork", run=True)
    assert fork.state.status == "failed"
    events = list(store.events("fork"))
    same = what_if(events, load(data).plan, load(data).contracts)
    assert same.ok, same.differences
    assert same.inherited == at and same.stopped is None and same.events == len(events)
    assert same.to_json()["inherited"] == at

    fewer = plan(task("a", "always_fails", input={"text": "$goal.text"},
                      retry={"max_attempts": 2, "backoff_s": 0.01}),
                 task("b", "upper", input={"text": "$a.text"}))
    changed = what_if(events, load(fewer).plan, load(fewer).contracts)
    assert not changed.ok
    first = changed.differences[0]
    assert first.seq > at and first.observation["kind"] == "AgentRaised"
    assert [d["kind"] for d in first.recorded][:1] == ["RetryScheduled"]
    assert [d["kind"] for d in first.whatif][:1] == ["TaskFailed"]


def test_what_if_on_a_fork_whose_history_the_changed_plan_cannot_hold_says_so() -> None:
    run_file = read_run(GOLDEN / "failed-rules3.jsonl")
    fork = fork_goal(run_file.events, goal_id="fork", at=4)
    events = collect(fork)
    renamed = plan(task("first", "always_fails", input={"text": "$goal.text"}),
                   task("b", "upper", input={"text": "$first.text"}))
    result = what_if(events, load(renamed).plan, load(renamed).contracts)
    assert result.stopped is not None and result.stopped["seq"] <= 4
    assert "inherited from failed" in result.stopped["reason"]
    assert result.differences == []
