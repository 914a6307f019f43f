"""Crash-resume: a real `baton run` process is SIGKILLed, `baton resume` finishes the goal.

Kill points are the save boundaries of a reference run (a kill between two events of one save
is the same as a kill before that save: a transaction is all or nothing). Every boundary of a
goal with more than thirty of them is tried, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from baton.domain.goal import OBSERVATION_KINDS
from baton.store.eventstore import open_store
from tests.cli_support import baton

STEPS = 28
FLAKY = {5, 11, 17}


def crash_plan(tmp_path: Path) -> Path:
    tasks: list[dict[str, Any]] = []
    previous = "$goal.text"
    for i in range(STEPS):
        agent = "logged_flaky" if i in FLAKY else "logged_step"
        tasks.append({"id": f"s{i:02d}", "agent": agent, "input": {"text": previous}})
        previous = f"$s{i:02d}.text"
    tasks.append({"id": "book", "agent": "logged_book", "input": {"text": previous},
                  "side_effects": "idempotent"})
    data = {
        "version": 1,
        "name": "crash-chain",
        "agents": {name: f"tests.agents:{name}"
                   for name in ("logged_step", "logged_flaky", "logged_book")},
        "defaults": {"retry": {"max_attempts": 3, "backoff_s": 0}},
        "tasks": tasks,
        "output": {"text": previous, "booking": "$book.text"},
    }
    path = tmp_path / "crash.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def calls(directory: Path) -> list[dict[str, Any]]:
    log = directory / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def save_boundaries(store_url: str, goal_id: str) -> list[int]:
    """Event counts after each save: the version just before every later observation."""
    store = open_store(store_url)
    try:
        events = store.events(goal_id)
    finally:
        store.close()
    names = [type(e).__name__ for e in events]
    cuts = [i for i in range(1, len(names)) if names[i] in OBSERVATION_KINDS]
    return [*cuts, len(names)]


@pytest.mark.slow
def test_killed_at_every_save_boundary_resumes_to_the_same_result(
    store_url: str, tmp_path: Path
) -> None:
    plan = str(crash_plan(tmp_path))
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    env = {"BATON_TEST_DIR": str(reference_dir)}
    reference = baton("run", plan, "--input", '{"text": "go"}', "--goal-id", "ref", "--json",
                      store=store_url, env=env)
    assert reference.code == 0, reference.err
    expected = reference.json()
    boundaries = save_boundaries(store_url, "ref")
    assert len(boundaries) - 1 >= 30  # distinct kill points

    for cut in boundaries[:-1]:  # the last boundary is the end: nothing left to resume
        goal_id = f"kill-{cut}"
        directory = tmp_path / goal_id
        directory.mkdir()
        env = {"BATON_TEST_DIR": str(directory)}
        killed = baton("run", plan, "--input", '{"text": "go"}', "--goal-id", goal_id,
                       "--json", store=store_url, env={**env, "BATON_CRASH_AT_EVENT": str(cut)})
        assert killed.code == -9, f"cut {cut}: {killed.code} {killed.err}"
        resumed = baton("resume", goal_id, "--json", store=store_url, env=env)
        assert resumed.code == 0, f"cut {cut}: {resumed.err}"
        result = resumed.json()
        assert result["status"] == "completed"
        assert result["output"]["text"] == expected["output"]["text"], f"cut {cut}"
        booked = [c for c in calls(directory) if c["agent"] == "logged_book"]
        assert len(booked) == 1, f"cut {cut}: booked {len(booked)} times"
        assert result["output"]["booking"] == f"booked:{booked[0]['key'][:8]}"

        made = Counter(c["text"] for c in calls(directory) if c["agent"] == "logged_step")
        assert all(n == 1 for n in made.values()), f"cut {cut}: a finished task ran again"
        flaky = Counter(c["text"] for c in calls(directory) if c["agent"] == "logged_flaky")
        assert sorted(flaky.values()) == [2, 2, 2], f"cut {cut}: {flaky}"
        store = open_store(store_url)
        try:
            accepted = Counter(
                e.task for e in store.events(goal_id) if type(e).__name__ == "OutputAccepted"
            )
        finally:
            store.close()
        assert set(accepted.values()) == {1} and len(accepted) == STEPS + 1, f"cut {cut}"


def _single_task_plan(tmp_path: Path, side_effects: str) -> str:
    data = {
        "version": 1,
        "name": "pay",
        "agents": {"charge": "tests.agents:dies_midcall"},
        "tasks": [{"id": "charge", "agent": "charge", "input": {"text": "$goal.text"},
                   "side_effects": side_effects}],
        "output": "$charge.text",
    }
    path = tmp_path / f"{side_effects}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_an_unsafe_task_killed_mid_call_is_escalated_never_rerun(
    store_url: str, tmp_path: Path
) -> None:
    plan = _single_task_plan(tmp_path, "unsafe")
    env = {"BATON_TEST_DIR": str(tmp_path)}
    killed = baton("run", plan, "--input", '{"text": "card"}', "--goal-id", "pay",
                   store=store_url, env={**env, "BATON_TEST_DIE": "1"})
    assert killed.code == -9
    resumed = baton("resume", "pay", "--json", store=store_url, env=env)
    assert resumed.code == 3, resumed.err
    assert resumed.json()["tasks"]["charge"]["status"] == "escalated"
    assert len(calls(tmp_path)) == 1  # the agent ran once, and only once
    waiting = baton("escalations", "--json", store=store_url).json()["escalations"]
    assert "outcome unknown" in waiting[0]["reason"]
    # a human checks the payment provider and records what happened
    resolved = baton("resolve", "pay", "charge", "--output", '{"text": "charged:checked"}',
                     "--reason", "charge found in the provider dashboard", "--by", "ops",
                     store=store_url, env=env)
    assert resolved.code == 0, resolved.err
    done = baton("resume", "pay", "--json", store=store_url, env=env)
    assert done.code == 0 and done.json()["output"] == "charged:checked"
    assert len(calls(tmp_path)) == 1


def test_an_idempotent_task_killed_mid_call_reruns_with_the_same_key(
    store_url: str, tmp_path: Path
) -> None:
    plan = _single_task_plan(tmp_path, "idempotent")
    env = {"BATON_TEST_DIR": str(tmp_path)}
    killed = baton("run", plan, "--input", '{"text": "card"}', "--goal-id", "pay",
                   store=store_url, env={**env, "BATON_TEST_DIE": "1"})
    assert killed.code == -9
    resumed = baton("resume", "pay", "--json", store=store_url, env=env)
    assert resumed.code == 0, resumed.err
    made = calls(tmp_path)
    assert len(made) == 2 and made[0]["key"] == made[1]["key"]
    assert resumed.json()["output"] == f"charged:{made[0]['key'][:8]}"


def test_a_resolve_while_no_runner_drives_the_goal_leaves_the_retry_to_the_next_runner(
    store_url: str, tmp_path: Path
) -> None:
    """The runner died while `side` ran, just after unsafe `a` escalated (the goal still
    running). `resolve --retry` records the human's decision but no dispatch: the next runner
    runs `a` once, rather than finding a dispatch nobody ran and escalating it as "outcome
    unknown"."""
    from tests.golden.regenerate import UNDRIVEN_PLAN  # the shape its golden run file has

    env = {"BATON_TEST_DIR": str(tmp_path)}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(UNDRIVEN_PLAN))
    # Started, a and side dispatched, a raised and escalated (side hangs): killed at that save.
    killed = baton("run", str(path), "--input", '{"text": "x"}', "--goal-id", "g",
                   store=store_url, env={**env, "BATON_CRASH_AT_EVENT": "5"})
    assert killed.code == -9, killed.err
    status = baton("status", "g", "--json", store=store_url).json()
    assert status["status"] == "running" and status["tasks"]["a"]["status"] == "escalated"

    resolved = baton("resolve", "g", "a", "--retry", "--reason", "upstream back", "--by", "ana",
                     "--json", store=store_url, env=env)
    assert resolved.code == 0, resolved.err
    assert resolved.json()["tasks"]["a"]["status"] == "ready"  # not dispatched by the command

    done = baton("resume", "g", "--json", store=store_url, env=env)
    assert done.code == 0, done.err
    assert done.json()["output"] == {"a": "x~", "side": "x!"}
    assert [c["agent"] for c in calls(tmp_path)].count("logged_flaky") == 2  # failed, then ran


def test_a_resume_that_races_a_resolve_records_its_run_resumed_and_drives_the_retry(
    store: Any,
) -> None:
    """`resolve` saved between a resume's read of the goal and its first save: the save
    conflicts and is made again on the goal as it now stands. The runner's `RunResumed` went
    with the stale goal, so the resolved retry was never dispatched and the goal stayed
    waiting while the resume returned."""
    import uuid

    from baton.runtime.loading import prepare_plan
    from baton.runtime.runner import Runner
    from baton.runtime.service import resolve_task
    from tests.agents import CALLS
    from tests.support import kinds, run

    text = uuid.uuid4().hex  # tests.agents.flaky fails once per text, in this process
    data = {"version": 1, "name": "raced", "agents": {"flaky": "tests.agents:flaky"},
            "tasks": [{"id": "t", "agent": "flaky", "input": {"text": "$goal.text"},
                       "on_failure": "escalate", "retry": {"max_attempts": 1}}],
            "output": "$t.text"}
    goal = run(store, data, {"text": text}, goal_id="raced")
    assert goal.state.status == "waiting"
    stale = store.get("raced")  # what the resume read
    resolve_task(store, "raced", "t", action="retry", reason="upstream back", by="ana")
    done = Runner(store=store, loaded=prepare_plan(data)).resume(stale, concurrency=1)
    assert done.state.status == "completed", kinds(store, "raced")
    assert kinds(store, "raced").count("RunResumed") == 1
    assert CALLS[f"flaky:{text}"] == 2
