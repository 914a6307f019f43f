"""`status GOAL` shows a goal that exists, whatever the read models have caught up with, and
agrees with `escalations` after a human resolved the wait."""

from __future__ import annotations

from pathlib import Path

import yaml

from baton.store.eventstore import open_store
from tests.cli_support import baton
from tests.support import plan, run, task

BERLIN = '{"origin": "LHR", "destination": "Berlin", "passengers": 2}'


def test_status_of_a_goal_whose_runner_was_killed(store_url: str, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.yaml"
    two_steps = plan(task("a", "upper", input={"text": "$goal.text"}),
                     task("b", "exclaim", input={"text": "$a.text"}))
    plan_file.write_text(yaml.safe_dump(two_steps))
    crashed = baton("run", str(plan_file), "--input", '{"text": "x"}', "--goal-id", "crashed",
                    store=store_url, env={"BATON_CRASH_AT_EVENT": "5"})
    assert crashed.code == -9  # killed before it caught the read models up
    shown = baton("status", "crashed", "--json", store=store_url)
    assert shown.code == 0, shown.err
    assert shown.json()["goal_id"] == "crashed" and shown.json()["status"] == "running"
    assert "behind the log" in shown.err
    text = baton("status", "crashed", store=store_url)
    assert text.code == 0 and "status: running" in text.out
    # nobody drives it any more (SQLite names the dead owner, PostgreSQL lost its lock with
    # the session): the operator is told how it moves on, read models behind or not
    assert "no live process drives it: a worker picks it up; without workers: baton resume " \
        "crashed" in text.out
    assert baton("projections", "update", store=store_url).code == 0
    caught_up = baton("status", "crashed", store=store_url)
    assert "behind the log" not in caught_up.err
    assert "without workers: baton resume crashed" in caught_up.out
    done = baton("run", str(plan_file), "--input", '{"text": "x"}', "--goal-id", "done",
                 store=store_url)
    assert done.code == 0 and "no live process" not in baton("status", "done",
                                                             store=store_url).out


def test_status_of_a_goal_written_by_another_process_is_live(store_url: str) -> None:
    store = open_store(store_url)
    try:  # written without the CLI's catch-up, as a runner elsewhere does mid-run
        run(store, plan(task("a", "upper", input={"text": "$goal.text"})), {"text": "hi"},
            goal_id="elsewhere")
    finally:
        store.close()
    shown = baton("status", "elsewhere", "--json", store=store_url)
    assert shown.code == 0, shown.err
    assert shown.json()["status"] == "completed"
    assert shown.json()["tasks"] == {"a": {"status": "succeeded", "attempts": 1}}
    missing = baton("status", "nowhere", store=store_url)
    assert missing.code == 2 and "no goal 'nowhere'" in missing.err


def test_status_after_a_resolve_points_at_resume_like_escalations(store_url: str) -> None:
    ran = baton("run", "examples/travel/plan.yaml", "--input", BERLIN, "--goal-id", "b",
                store=store_url)
    assert ran.code == 3
    assert "resolve with: baton resolve b" in baton("status", "b", store=store_url).out
    resolved = baton("resolve", "b", "price", "--retry", "--reason", "r", "--by", "ana",
                     store=store_url)
    assert resolved.code == 0, resolved.err
    assert resolved.out.splitlines() == [  # one line, right with workers and without
        "recorded: retry of price by ana; goal b is waiting — a worker picks it up; without "
        "workers: baton resume b"
    ]
    assert baton("escalations", "--json", store=store_url).json() == {"escalations": []}
    shown = baton("status", "b", store=store_url).out
    assert "resolve with" not in shown and "waiting for a human" not in shown
    assert "a worker picks it up; without workers: baton resume b" in shown
