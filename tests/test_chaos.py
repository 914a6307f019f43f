"""Chaos: several workers on one PostgreSQL, one SIGKILLed mid-run, lock sessions cut by the
server; and two `baton resume`s racing on one goal. What must hold (docs/reference.md,
"Workers"): every goal reaches a final status (or waits for a human on an unsafe attempt whose
outcome is unknown); no dispatch runs twice (so no finished task runs again); no unsafe agent
runs twice; an idempotent agent runs again only with its original key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from baton.domain.contracts import idempotency_key
from baton.runtime.loading import load_plan_file
from baton.runtime.service import submit_goal
from baton.store.eventstore import open_store
from tests.cli_support import ROOT, baton
from tests.conftest import PG_URL

GOALS = 60
WORKERS = 3
# task -> (agent, the task its input comes from); texts grow by one suffix per agent
TASKS = {
    "a": ("chaos_none", None),
    "b": ("chaos_idempotent", "a"),
    "e": ("chaos_unsafe", "a"),
    "c": ("chaos_unsafe", "b"),
    "d": ("chaos_none", "c"),
}
SUFFIX = {"chaos_none": ".n", "chaos_idempotent": ".i", "chaos_unsafe": ".u"}
SIDE_EFFECTS = {"chaos_none": "none", "chaos_idempotent": "idempotent", "chaos_unsafe": "unsafe"}


def chaos_plan(tmp_path: Path) -> str:
    tasks = [
        {"id": task_id, "agent": agent, "side_effects": SIDE_EFFECTS[agent],
         "input": {"text": "$goal.text" if source is None else f"${source}.text"}}
        for task_id, (agent, source) in TASKS.items()
    ]
    data = {"version": 1, "name": "chaos",
            "agents": {name: f"tests.worker_agents:{name}" for name in SUFFIX},
            "tasks": tasks, "output": "$d"}
    path = tmp_path / "chaos.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def task_text(goal_id: str, task_id: str) -> str:
    """The input text task `task_id` of goal `goal_id` gets: what its agent logs."""
    source = TASKS[task_id][1]
    if source is None:
        return goal_id
    return task_text(goal_id, source) + SUFFIX[TASKS[source][0]]


def executions(tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def start_worker(store_url: str, tmp_path: Path, *, concurrency: int = 4,
                 sleep: float = 0.2) -> subprocess.Popen[str]:
    env = {**os.environ, "BATON_STORE": store_url, "BATON_TEST_DIR": str(tmp_path),
           "BATON_TEST_SLEEP": str(sleep)}
    path = tmp_path / f"worker-{time.monotonic_ns()}.log"  # read on failure
    proc = subprocess.Popen(
        [sys.executable, "-m", "baton.cli", "worker", "--concurrency", str(concurrency)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=path.open("w"), text=True,
    )
    # One at a time: opening a PostgreSQL store from several processes at once can still fail
    # while its tables and function are (re)created (the store's issue, not the workers').
    wait_for(lambda: "worker started" in path.read_text() or proc.poll() is not None,
             "a worker to start")
    assert proc.poll() is None, path.read_text()
    return proc


def wait_for(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def cut_lock_sessions(pid: int) -> int:
    """Terminate, from the server, process `pid`'s lock sessions: the one that holds all its
    goals' locks (and any a `--wait` waited on); how many there were."""
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE %s", (f"baton {pid}@%",),
        ).fetchall()
    return len(rows)


def lock_sessions(pid: int) -> int:
    """Server sessions named for process `pid`'s goal locks."""
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
                           (f"baton {pid}@%",)).fetchone()
    assert row is not None
    return int(row[0])


def locks_held_by(pid: int) -> int:
    """Goal locks (single-bigint advisory locks) held by process `pid`'s sessions."""
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND a.application_name LIKE %s", (f"baton {pid}@%",)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.postgres
def test_workers_survive_a_kill_and_cut_connections(postgres_url: str, tmp_path: Path) -> None:
    loaded = load_plan_file(chaos_plan(tmp_path))
    store = open_store(postgres_url)
    workers = [start_worker(postgres_url, tmp_path) for _ in range(WORKERS)]
    try:
        for i in range(GOALS):  # what `baton submit` does, without a process per goal
            submit_goal(store, loaded, {"text": f"g{i:03d}"}, goal_id=f"g{i:03d}")
        store.close()
        victim = workers[0]
        wait_for(lambda: any(e["pid"] == victim.pid for e in executions(tmp_path)),
                 "the first worker to run an agent")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        workers.append(start_worker(postgres_url, tmp_path))
        wait_for(lambda: any(cut_lock_sessions(w.pid) for w in workers[1:]),
                 "a lock session to cut")
        store = open_store(postgres_url)
        try:
            def all_settled() -> bool:
                return all(store.get(f"g{i:03d}").state.status != "running"
                           for i in range(GOALS))
            wait_for(all_settled, "every goal to settle", timeout=120)
            goals = [store.get(f"g{i:03d}") for i in range(GOALS)]
            histories = {goal.id: list(store.events(goal.id)) for goal in goals}
        finally:
            store.close()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=60)

    logs = "".join(path.read_text() for path in tmp_path.glob("worker-*.log"))
    assert "claimed (resumed" in logs  # the killed worker's goal was taken up by another
    assert_the_rules_held(goals, histories, executions(tmp_path))


def assert_the_rules_held(goals: list[Any], histories: dict[str, list[Any]],
                          calls: list[dict[str, Any]]) -> None:
    """Every goal final (or waiting on an unsafe attempt), no dispatch run twice, no unsafe
    agent run twice, an idempotent agent run again only with its original key."""
    runs = Counter((call["agent"], call["text"]) for call in calls)
    for goal in goals:
        events = histories[goal.id]
        escalated_unsafe = {
            e.task for e in events
            if type(e).__name__ == "TaskEscalated" and e.rule == "side_effects.unsafe"
        }
        if goal.state.status == "waiting":  # only an unsafe attempt of unknown outcome may stop it
            assert escalated_unsafe, (goal.id, goal.state.status)
        else:
            assert goal.state.status == "completed", (goal.id, goal.state.status)
        for task_id, (agent, _) in TASKS.items():
            dispatched = sum(1 for e in events
                             if type(e).__name__ == "TaskDispatched" and e.task == task_id)
            ran = runs[(agent, task_text(goal.id, task_id))]
            assert ran <= dispatched, (goal.id, task_id, ran, dispatched)  # no dispatch twice
            if agent == "chaos_unsafe":
                assert ran <= 1, (goal.id, task_id, ran)
    key_of = {(call["agent"], call["text"]): call["key"] for call in calls}
    for call in calls:
        if call["agent"] == "chaos_idempotent":
            goal_id = call["text"].split(".")[0]
            task_id = next(t for t, (a, _) in TASKS.items()
                           if a == "chaos_idempotent" and task_text(goal_id, t) == call["text"])
            assert call["key"] == idempotency_key(goal_id, task_id) == key_of[
                ("chaos_idempotent", call["text"])]


@pytest.mark.postgres
def test_a_cut_lock_session_hands_every_goal_on_and_no_dispatch_runs_twice(
    postgres_url: str, tmp_path: Path
) -> None:
    """One worker drives eight goals, all locked on its one lock session; the server terminates
    that session mid-drive, which frees them all at once; a second worker takes them over, and
    the first one's runners, fenced by the goals' versions, run nothing they did not record."""
    loaded = load_plan_file(chaos_plan(tmp_path))
    store = open_store(postgres_url)
    ids = [f"cut{i}" for i in range(8)]
    # agents of 2 s: the first worker's runners are still driving when the second one claims
    first = start_worker(postgres_url, tmp_path, concurrency=8, sleep=2.0)
    workers = [first]
    try:
        for goal_id in ids:
            submit_goal(store, loaded, {"text": goal_id}, goal_id=goal_id)
        wait_for(lambda: locks_held_by(first.pid) == 8, "the worker to claim every goal")
        # ready before the cut (it leaves goals another live process holds alone), so it takes
        # them over while the first worker's runners are still driving them
        workers.append(start_worker(postgres_url, tmp_path, concurrency=8, sleep=2.0))
        wait_for(lambda: any(e["agent"] == "chaos_unsafe" for e in executions(tmp_path)),
                 "an unsafe attempt to be in flight")
        assert lock_sessions(first.pid) == 1
        assert cut_lock_sessions(first.pid) == 1

        def all_settled() -> bool:
            return all(store.get(goal_id).state.status != "running" for goal_id in ids)

        wait_for(all_settled, "every goal to settle", timeout=120)
        goals = [store.get(goal_id) for goal_id in ids]
        histories = {goal.id: list(store.events(goal.id)) for goal in goals}
    finally:
        store.close()
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=60)

    logs = {path.read_text() for path in tmp_path.glob("worker-*.log")}
    took_over = [log for log in logs if "claimed (resumed" in log and "(submitted)" not in log]
    assert took_over, "\n".join(logs)
    assert_the_rules_held(goals, histories, executions(tmp_path))


def test_two_resumes_racing_on_one_goal_one_drives_it(store_url: str, tmp_path: Path) -> None:
    data = {"version": 1, "name": "waits",
            "agents": {"wait": "tests.agents:waits_for_file"},
            "tasks": [{"id": "wait", "agent": "wait", "input": {"text": "$goal.text"}}],
            "output": "$wait"}
    plan = tmp_path / "waits.yaml"
    plan.write_text(yaml.safe_dump(data))
    env = {**os.environ, "BATON_STORE": store_url, "BATON_TEST_DIR": str(tmp_path)}
    first = baton("run", str(plan), "--input", '{"text": "r"}', "--goal-id", "race",
                  store=store_url, env={"BATON_TEST_DIR": str(tmp_path),
                                        "BATON_CRASH_AT_EVENT": "2"})
    assert first.code == -signal.SIGKILL, first.err  # stored its dispatch, then died
    racers = [
        subprocess.Popen([sys.executable, "-m", "baton.cli", "resume", "race", "--json"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for _ in range(2)
    ]
    calls = tmp_path / "calls.jsonl"
    losers: list[tuple[subprocess.Popen[str], str]] = []

    def one_lost() -> bool:
        for racer in racers:
            if racer.poll() is not None and all(racer is not r for r, _ in losers):
                losers.append((racer, racer.communicate()[1]))
        return bool(losers)

    wait_for(one_lost, "one resume to give up")
    (tmp_path / "release").write_text("")
    (loser, err), = losers
    winner = next(r for r in racers if r is not loser)
    out, winner_err = winner.communicate(timeout=60)
    assert loser.returncode == 2 and f"pid {winner.pid}" in err, err
    assert winner.returncode == 0, winner_err
    assert json.loads(out)["status"] == "completed"
    assert calls.exists()
    assert len(calls.read_text().splitlines()) == 1  # only the winner called the agent
