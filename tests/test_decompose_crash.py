"""Crash-resume of a decomposed goal: a real `baton run` is SIGKILLed right after a planner's
fragment is accepted, and in the middle of a map; `baton resume` finishes it with every task
run once (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from baton.store.eventstore import open_store
from tests.cli_support import baton
from tests.test_crash import calls, save_boundaries

FRAGMENT = {
    "tasks": [{"id": "a", "agent": "logged_upper", "input": {"text": "$goal.text"}}],
    "output": {"items": ["p", "q", "r", "s"], "summary": "$a.text"},
}


def decomposed_plan(tmp_path: Path) -> str:
    data = {
        "version": 1,
        "name": "decomposed",
        "agents": {"planner": "tests.decompose_agents:planner",
                   "logged_upper": "tests.decompose_agents:logged_upper",
                   "collect": "tests.decompose_agents:collect"},
        "tasks": [
            {"id": "plan", "agent": "planner", "input": {"fragments": "$goal.fragments"},
             "expands": {"result": "tests.decompose_agents:Outline"}},
            {"id": "each", "agent": "logged_upper", "for_each": "$plan.items", "as": "item",
             "input": {"text": "$item"}},
            {"id": "all", "agent": "collect", "input": {"texts": "$each"}},
        ],
        "output": {"all": "$all.text", "summary": "$plan.summary"},
    }
    path = tmp_path / "decomposed.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _kinds(store_url: str, goal_id: str) -> list[tuple[str, Any]]:
    store = open_store(store_url)
    try:
        return [(type(e).__name__, getattr(e, "task", None)) for e in store.events(goal_id)]
    finally:
        store.close()


def test_killed_after_plan_extended_or_mid_map_resumes_to_the_same_result(
    store_url: str, tmp_path: Path
) -> None:
    plan = decomposed_plan(tmp_path)
    goal_input = json.dumps({"text": "go", "fragments": [FRAGMENT]})
    reference = baton("run", plan, "--input", goal_input, "--goal-id", "ref", "--json",
                      "--concurrency", "1", store=store_url,
                      env={"BATON_TEST_DIR": str(tmp_path)})
    assert reference.code == 0, reference.err
    expected = reference.json()["output"]
    assert expected == {"all": "P+Q+R+S", "summary": "GO"}
    kinds = _kinds(store_url, "ref")
    boundaries = save_boundaries(store_url, "ref")
    extended = kinds.index(("PlanExtended", "plan")) + 1
    second = [i for i, (kind, task) in enumerate(kinds)
              if kind == "OutputAccepted" and str(task).startswith("each[")][1] + 1
    cuts = {"after-plan-extended": min(c for c in boundaries if c >= extended),
            "mid-map": min(c for c in boundaries if c >= second)}
    assert cuts["mid-map"] < boundaries[-1]
    for name, cut in cuts.items():
        directory = tmp_path / name
        directory.mkdir()
        env = {"BATON_TEST_DIR": str(directory)}
        killed = baton("run", plan, "--input", goal_input, "--goal-id", name, "--json",
                       "--concurrency", "1", store=store_url,
                       env={**env, "BATON_CRASH_AT_EVENT": str(cut)})
        assert killed.code == -9, f"{name}: {killed.code} {killed.err}"
        resumed = baton("resume", name, "--json", store=store_url, env=env)
        assert resumed.code == 0, f"{name}: {resumed.err}"
        assert resumed.json()["output"] == expected, name
        ran = Counter(c["text"] for c in calls(directory))
        assert set(ran.values()) == {1}, f"{name}: a finished task ran again: {ran}"
        assert sorted(ran) == ["go", "p", "q", "r", "s"], name
        added = [kind for kind, _ in _kinds(store_url, name) if kind in ("PlanExtended",
                                                                          "MapExpanded")]
        assert added == ["PlanExtended", "MapExpanded"], name
        replayed = baton("replay", name, "--json", store=store_url)
        assert replayed.code == 0 and replayed.json()["ok"], replayed.out


@pytest.mark.parametrize("width", [0, 3])
def test_replay_at_every_event_of_a_map_reproduces_its_width(store_url: str, tmp_path: Path,
                                                            width: int) -> None:
    plan = decomposed_plan(tmp_path)
    fragment = {**FRAGMENT, "output": {"items": ["x"] * width, "summary": "$a.text"}}
    goal_input = json.dumps({"text": "go", "fragments": [fragment]})
    ran = baton("run", plan, "--input", goal_input, "--goal-id", "g", store=store_url)
    assert ran.code == 0, ran.err
    kinds = [kind for kind, _ in _kinds(store_url, "g")]
    total, expanded = len(kinds), kinds.index("MapExpanded") + 1
    before = baton("replay", "g", "--at", str(expanded - 1), "--json", store=store_url).json()
    after = baton("replay", "g", "--at", str(expanded), "--json", store=store_url).json()
    assert before["ok"] and after["ok"]
    assert not any(t.startswith("each[") for t in before["state"]["tasks"])
    assert sorted(t for t in after["state"]["tasks"] if t.startswith("each[")) == [
        f"each[{i}]" for i in range(width)]
    assert baton("replay", "g", "--at", str(total), "--json", store=store_url).json()["ok"]
