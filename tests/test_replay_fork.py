"""Fork: a new goal from the first N events of another, then on with today's agents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from baton.domain.history import HistoryError, fork_goal, payload
from baton.domain.replay import replay
from baton.runtime.service import resume_goal
from baton.store.eventstore import BatonStore
from tests.cli_support import baton
from tests.replay_support import contracts_of, seq_of
from tests.support import run

PLAN = {
    "version": 1,
    "name": "fork-me",
    "agents": {"upper": "tests.agents:upper", "fixable": "tests.replay_agents:fixable",
               "exclaim": "tests.agents:exclaim"},
    "defaults": {"retry": {"max_attempts": 2, "backoff_s": 0}},
    "tasks": [
        {"id": "a", "agent": "upper", "input": {"text": "$goal.text"}},
        {"id": "b", "agent": "fixable", "input": {"text": "$a.text"}},
        {"id": "c", "agent": "exclaim", "input": {"text": "$b.text"}},
    ],
}


def failed_goal(store: BatonStore, monkeypatch: pytest.MonkeyPatch) -> list:  # type: ignore[type-arg]
    monkeypatch.delenv("BATON_TEST_FIXED", raising=False)
    goal = run(store, PLAN, {"text": "trip"}, goal_id="broken")
    assert goal.state.status == "failed"
    return list(store.events("broken"))


def test_a_fork_before_the_failure_completes_with_the_fixed_agent(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = failed_goal(store, monkeypatch)
    at = seq_of(events, "AgentRaised") - 1  # b's first attempt dispatched, its outcome not kept
    fork = fork_goal(events, goal_id="fixed", at=at)
    store.save(fork)
    copied = list(store.events("fixed"))
    assert len(copied) == at
    assert copied[0].forked_from == "broken" and copied[0].forked_at == at  # type: ignore[attr-defined]
    for mine, theirs in zip(copied[1:], events[1:at], strict=True):
        assert type(mine) is type(theirs) and payload(mine) == payload(theirs)

    monkeypatch.setenv("BATON_TEST_FIXED", "1")  # the fix ships
    goal = resume_goal(store, "fixed")
    assert goal.state.status == "completed"
    assert goal.state.output == {"c": {"text": "TRIP (fixed)!"}}
    assert goal.state.tasks["b"].attempts == 2  # the interrupted attempt, then the fixed one

    result = replay(list(store.events("fixed")), contracts_of(events))
    assert result.ok, result.divergence
    assert result.inherited == at
    from baton.history.recorded import reexecute
    from baton.runtime.loading import prepare_plan

    again = reexecute(list(store.events("fixed")), prepare_plan(events[0].plan))
    assert again.ok, again.divergence
    # The same count: inherited decisions are copied, not re-decided, by either replay.
    assert (again.events, again.decisions, again.inherited) == (
        result.events, result.decisions, result.inherited)
    assert replay(events, contracts_of(events)).ok  # the parent is untouched


def test_fork_refuses_an_n_outside_the_history(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = failed_goal(store, monkeypatch)
    with pytest.raises(HistoryError, match=r"outside 1\.\."):
        fork_goal(events, goal_id="x", at=len(events) + 1)


def test_fork_cli_prints_the_new_id_and_runs_it(sqlite_url: str, tmp_path: Path) -> None:
    import json

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN))
    broken = baton("run", str(plan), "--input", '{"text": "trip"}', "--goal-id", "broken",
                   store=sqlite_url)
    assert broken.code == 1
    audit = baton("audit", "broken", "--json", store=sqlite_url).json()
    raised = next(o for o in audit["observations"] if o["kind"] == "AgentRaised")
    at = raised["seq"] - 1

    plain = baton("fork", "broken", "--at", str(at), store=sqlite_url)
    assert plain.code == 0, plain.err
    new_id = plain.out.strip()
    assert baton("status", new_id, "--json", store=sqlite_url).json()["status"] == "running"

    ran = baton("fork", "broken", "--at", str(at), "--run", "--json", "--goal-id", "fixed",
                store=sqlite_url, env={"BATON_TEST_FIXED": "1"})
    assert ran.code == 0, ran.err
    data = ran.json()
    assert (data["goal_id"], data["forked_from"], data["at"]) == ("fixed", "broken", at)
    assert data["status"] == "completed"
    replayed = baton("replay", "fixed", "--json", store=sqlite_url).json()
    assert replayed["ok"] and replayed["inherited"] == at

    readable = baton("fork", "broken", "--at", str(at), "--run", "--goal-id", "fixed-too",
                     store=sqlite_url, env={"BATON_TEST_FIXED": "1"})
    assert readable.code == 0 and readable.out.splitlines()[0] == "fixed-too"
    assert "status: completed" in readable.out
    row = next(line for line in readable.out.splitlines() if line.startswith("│ b "))
    assert re.search(r"│\s+2 │\s+\d+\.\d │", row), row  # attempts, then the agent time in ms

    again = baton("fork", "broken", "--at", str(at), "--goal-id", "fixed", store=sqlite_url)
    assert again.code == 2 and "already exists" in again.err
    beyond = baton("fork", "broken", "--at", "999", store=sqlite_url)
    assert beyond.code == 2 and "outside" in beyond.err and "Traceback" not in beyond.err


def test_a_fork_of_an_old_run_is_rebased_so_its_deadline_still_holds(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent ran an hour ago under a 60 s deadline; the fork runs now and completes."""
    from datetime import timedelta

    from baton.runtime.loading import prepare_plan
    from baton.runtime.runner import Runner, utc_now
    from baton.runtime.service import start_goal

    monkeypatch.delenv("BATON_TEST_FIXED", raising=False)
    data = {**PLAN, "budget": {"deadline_s": 60}}
    loaded = prepare_plan(data)
    an_hour_ago = Runner(store=store, loaded=loaded, clock=lambda: utc_now() - timedelta(hours=1))
    assert start_goal(store, loaded, {"text": "trip"}, goal_id="old",
                      runner=an_hour_ago).state.status == "failed"
    events = list(store.events("old"))
    at = seq_of(events, "AgentRaised") - 1
    monkeypatch.setenv("BATON_TEST_FIXED", "1")

    store.save(fork_goal(events, goal_id="verbatim", at=at))  # times kept as recorded
    assert resume_goal(store, "verbatim").state.status == "failed"  # the hour counts
    assert "deadline_s" in [getattr(e, "budget", None) for e in store.events("verbatim")]

    store.save(fork_goal(events, goal_id="rebased", at=at, now=utc_now()))
    goal = resume_goal(store, "rebased")
    assert goal.state.status == "completed"
    spacing = [e.timestamp - events[0].timestamp for e in events[:at]]
    rebased = list(store.events("rebased"))
    assert [type(e) for e in rebased[:at]] == [type(e) for e in events[:at]]
    assert [e.timestamp - rebased[0].timestamp for e in rebased[:at]] == spacing
    times = [e.timestamp for e in rebased]
    assert times == sorted(times)  # what the fork did next comes after what it inherited
    assert replay(rebased, contracts_of(events)).ok
