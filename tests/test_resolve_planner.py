"""`resolve --output` on an escalated planner or map: a planner whose fragment has not joined
the goal takes a fragment, checked as its own output would be, before anything is recorded;
a map takes the list of its agent's output model (docs/reference.md, "Planner tasks and maps")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from baton.domain.state import RESOLVED_WAIT
from baton.store.eventstore import open_store
from tests.inprocess import cli
from tests.replay_support import decided_under
from tests.support import plan_file
from tests.test_decompose import AGENTS, D

BAD = {"tasks": [{"id": "a", "agent": "nobody", "input": {"text": "$goal.text"}}],
       "output": {"items": [], "summary": "$a.text"}}
GOOD = {"tasks": [{"id": "a", "agent": "upper", "input": {"text": "by hand"}}],
        "output": {"items": ["$a.text"], "summary": "$a.text"}}


def planner_plan() -> dict[str, Any]:
    return {
        "version": 1, "name": "pe", "agents": AGENTS,
        "defaults": {"retry": {"max_attempts": 1}},
        "tasks": [
            {"id": "plan", "agent": "planner", "on_failure": "escalate",
             "input": {"fragments": "$goal.fragments"}, "expands": {"result": f"{D}:Outline"}},
            {"id": "after", "agent": "exclaim", "input": {"text": "$plan.summary"}},
        ],
    }


def _kinds(store_url: str, goal_id: str) -> list[str]:
    store = open_store(store_url)
    try:
        return [type(event).__name__ for event in store.events(goal_id)]
    finally:
        store.close()


def _escalated_planner(store_url: str, tmp_path: Path, goal_id: str) -> None:
    plan = plan_file(tmp_path, planner_plan())
    goal_input = json.dumps({"fragments": [BAD]})
    ran = cli("--store", store_url, "run", plan, "--input", goal_input, "--goal-id", goal_id)
    assert ran.code == 3, ran.err


def test_a_fragment_a_planner_would_reject_is_refused_and_nothing_recorded(
    store_url: str, tmp_path: Path
) -> None:
    _escalated_planner(store_url, tmp_path, "p")
    before = _kinds(store_url, "p")
    evil = {"tasks": [{"id": "a", "agent": "evil"}], "output": {"summary": "$a.text"}}
    refused = cli("--store", store_url, "resolve", "p", "plan", "--output", json.dumps(evil),
                  "--reason", "r")
    assert refused.code == 2, refused.out
    assert "agent 'evil' is not in the plan's agents allowlist" in refused.err
    assert "nothing recorded" in refused.err and len(refused.err.strip().splitlines()) == 1
    # the planner's result where a fragment is due: refused, saying what is expected
    result = {"items": ["x"], "summary": "just the result"}
    refused = cli("--store", store_url, "resolve", "p", "plan", "--output", json.dumps(result),
                  "--reason", "r")
    assert refused.code == 2, refused.out
    assert "a planner's output is a fragment" in refused.err and "nothing recorded" in refused.err
    assert len(refused.err.strip().splitlines()) == 1
    hides = {"tasks": [{"id": "goal", "agent": "upper", "input": {"text": "t"}}],
             "output": {"items": [], "summary": "$goal.text"}}
    refused = cli("--store", store_url, "resolve", "p", "plan", "--output", json.dumps(hides),
                  "--reason", "r")
    assert refused.code == 2, refused.out
    assert "tasks[plan/goal]: 'goal' is reserved for $goal" in refused.err
    assert _kinds(store_url, "p") == before  # no HumanResolved, no OutputRejected
    waiting = cli("--store", store_url, "status", "p", "--json").json()
    assert waiting["tasks"]["plan"]["status"] == "escalated"


def test_a_humans_fragment_runs_and_the_planner_joins_it(store_url: str, tmp_path: Path) -> None:
    """A planner escalated for want of a valid fragment, given one by a human: its tasks run,
    the planner joins them, the goal completes (decision rules 4)."""
    _escalated_planner(store_url, tmp_path, "p")
    given = cli("--store", store_url, "resolve", "p", "plan", "--output", json.dumps(GOOD),
                "--reason", "fixed by hand", "--json")
    assert given.code == 0, given.err
    shown = given.json()
    assert shown["tasks"]["plan"]["status"] == "running"  # it runs as the fragment's tasks
    assert shown["tasks"]["plan/a"]["status"] == "ready"
    assert shown["status"] == "waiting" and shown["reason"] == RESOLVED_WAIT
    assert cli("--store", store_url, "status", "p", "--json").json()["reason"] == RESOLVED_WAIT

    done = cli("--store", store_url, "resume", "p", "--json")
    assert done.code == 0, done.err
    assert done.json()["status"] == "completed"
    assert {tid: t["status"] for tid, t in done.json()["tasks"].items()} == {
        "plan": "succeeded", "after": "succeeded", "plan/a": "succeeded"}
    assert done.json()["output"] == {"after": {"text": "BY HAND!"}}
    assert cli("--store", store_url, "projections", "rebuild").code == 0
    rebuilt = cli("--store", store_url, "status", "p", "--json").json()
    assert rebuilt["status"] == "completed" and rebuilt["tasks"]["plan"]["status"] == "succeeded"
    assert cli("--store", store_url, "replay", "p").code == 0


def test_a_goal_decided_under_rules_3_keeps_its_history(store_url: str, tmp_path: Path) -> None:
    """Rules 1-3 left the planner escalated after a human's fragment: such a goal keeps being
    decided (and replayed) as it was."""
    with decided_under(3):
        _escalated_planner(store_url, tmp_path, "old")
    given = cli("--store", store_url, "resolve", "old", "plan", "--output", json.dumps(GOOD),
                "--reason", "fixed by hand", "--json")
    assert given.code == 0, given.err
    assert given.json()["tasks"]["plan"]["status"] == "escalated"
    assert cli("--store", store_url, "resume", "old").code == 3
    assert cli("--store", store_url, "replay", "old").code == 0


NOT_A_LIST = {
    "version": 1, "name": "mapesc", "agents": {"upper": "tests.agents:upper"},
    "tasks": [
        {"id": "m", "agent": "upper", "for_each": "$goal.items", "as": "item",
         "on_failure": "escalate", "input": {"text": "$item"}},
        {"id": "r", "agent": "upper", "input": {"text": "$m.0.text"}},
    ],
}


def _escalated_map(store_url: str, tmp_path: Path, goal_id: str) -> None:
    plan = plan_file(tmp_path, NOT_A_LIST)
    ran = cli("--store", store_url, "run", plan, "--input", '{"items": "notalist"}',
              "--goal-id", goal_id)
    assert ran.code == 3, ran.err


def test_a_maps_output_is_the_list_of_its_agents_output(store_url: str, tmp_path: Path) -> None:
    _escalated_map(store_url, tmp_path, "m")
    before = _kinds(store_url, "m")
    one = cli("--store", store_url, "resolve", "m", "m", "--output", '{"text": "x"}',
              "--reason", "one element")
    assert one.code == 2, one.out
    assert "the output given does not satisfy list[Text]" in one.err
    assert len(one.err.splitlines()) == 1
    assert _kinds(store_url, "m") == before  # nothing recorded

    given = cli("--store", store_url, "resolve", "m", "m", "--output", '[{"text": "x"}]',
                "--reason", "the list")
    assert given.code == 0, given.err
    done = cli("--store", store_url, "resume", "m", "--json")
    assert done.code == 0, done.err
    assert done.json()["status"] == "completed"
    assert done.json()["output"] == {"r": {"text": "X"}}
    assert cli("--store", store_url, "replay", "m").code == 0


def test_a_map_of_a_goal_decided_under_rules_3_takes_no_output(
    store_url: str, tmp_path: Path
) -> None:
    """Rules 1-3 judge a map's output as one element, which its dependants cannot read: such a
    goal's map takes retry or abandon, and nothing is recorded."""
    with decided_under(3):
        _escalated_map(store_url, tmp_path, "old")
    before = _kinds(store_url, "old")
    refused = cli("--store", store_url, "resolve", "old", "m", "--output", '{"text": "x"}',
                  "--reason", "one element")
    assert refused.code == 2, refused.out
    assert "decision rules 3" in refused.err and "retry or abandon it" in refused.err
    assert _kinds(store_url, "old") == before


def test_the_rules_4_golden_records_the_planner_joining_a_humans_fragment() -> None:
    """tests/golden/joined-rules4.jsonl (the golden tests replay it); the rules-3 golden's
    `PlanExtended` is version 1 and reads as moving nothing."""
    from baton.history.runfile import read_run

    golden = Path(__file__).parent / "golden"
    joined = read_run(str(golden / "joined-rules4.jsonl")).events
    assert joined[0].rules == 4
    [extended] = [e for e in joined if type(e).__name__ == "PlanExtended"]
    assert (extended.task, extended.from_escalation) == ("plan", True)
    assert type(joined[-1]).__name__ == "GoalCompleted"
    older = read_run(str(golden / "decomposed-rules3.jsonl")).events
    assert [e.from_escalation for e in older if type(e).__name__ == "PlanExtended"] == [False]
