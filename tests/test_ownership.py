"""One owner per goal (docs/reference.md, "Workers"), on SQLite and PostgreSQL.

A `baton run` is stopped inside an agent (it waits for a file), so the test knows the goal is
being driven; what a second process sees is then checked, and what it sees once the owner died.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from baton.store.eventstore import open_store
from baton.store.ownership import FencedOut, ownership_of
from tests import worker_agents
from tests.cli_support import ROOT, baton
from tests.support import kinds, plan, run, task


def waiting_plan(tmp_path: Path) -> str:
    data = {
        "version": 1,
        "name": "waits",
        "agents": {"wait": "tests.agents:waits_for_file"},
        "tasks": [{"id": "wait", "agent": "wait", "input": {"text": "$goal.text"}}],
        "output": "$wait",
    }
    path = tmp_path / "waits.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def start_run(store_url: str, tmp_path: Path, goal_id: str) -> subprocess.Popen[str]:
    """`baton run` of the waiting plan, returned once its agent is running (lock held)."""
    env = {**os.environ, "BATON_STORE": store_url, "BATON_TEST_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "baton.cli", "run", waiting_plan(tmp_path), "--input",
         '{"text": "go"}', "--goal-id", goal_id, "--json"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    calls = tmp_path / "calls.jsonl"
    deadline = time.monotonic() + 30
    while not calls.exists():  # polled, not timed: the agent writes this line when it starts
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the agent never started"
        time.sleep(0.02)
    return proc


def owner_of(store_url: str, goal_id: str) -> Any:
    store = open_store(store_url)
    try:
        return ownership_of(store).owner(goal_id)
    finally:
        store.close()


def test_a_second_runner_of_a_driven_goal_exits_2_naming_the_owner(
    store_url: str, tmp_path: Path
) -> None:
    proc = start_run(store_url, tmp_path, "g1")
    try:
        second = baton("resume", "g1", store=store_url, env={"BATON_TEST_DIR": str(tmp_path)})
        assert second.code == 2
        assert f"pid {proc.pid}" in second.err and socket.gethostname()[:28] in second.err
        assert len(second.err.strip().splitlines()) == 1
        owner = owner_of(store_url, "g1")
        assert (owner.pid, owner.alive) == (proc.pid, True)
    finally:
        (tmp_path / "release").write_text("")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    status = baton("status", "g1", "--json", store=store_url)
    assert status.code == 0, status.err
    assert status.json()["owner"] is None
    assert len((tmp_path / "calls.jsonl").read_text().splitlines()) == 1  # the agent ran once


def test_a_killed_owner_releases_the_goal_at_once(store_url: str, tmp_path: Path) -> None:
    proc = start_run(store_url, tmp_path, "g2")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    owner = owner_of(store_url, "g2")
    if store_url.startswith("sqlite"):  # the lock file remembers who died holding it
        assert (owner.pid, owner.alive) == (proc.pid, False)
    else:  # the session and its lock are gone with the process
        assert owner is None
    (tmp_path / "release").write_text("")
    resumed = baton("resume", "g2", "--json", store=store_url,
                    env={"BATON_TEST_DIR": str(tmp_path)})
    assert resumed.code == 0, resumed.err  # at once: nothing to wait out
    assert resumed.json()["status"] == "completed"
    assert owner_of(store_url, "g2") is None


def test_wait_takes_the_goal_once_its_owner_lets_go(store_url: str, tmp_path: Path) -> None:
    proc = start_run(store_url, tmp_path, "g3")
    env = {**os.environ, "BATON_STORE": store_url, "BATON_TEST_DIR": str(tmp_path)}
    waiter = subprocess.Popen(
        [sys.executable, "-m", "baton.cli", "resume", "g3", "--wait", "--json"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    (tmp_path / "release").write_text("")
    assert proc.wait(timeout=60) == 0
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert json.loads(out)["status"] == "completed"


def test_a_runner_whose_save_conflicts_with_another_runner_stops(store_url: str) -> None:
    """The fence: the first runner never runs a dispatch after another runner wrote."""
    store = open_store(store_url)
    worker_agents.TAKEOVER.update(url=store_url, goal="fenced")
    worker_agents.CALLED.clear()
    data = plan(
        task("first", "takes_over", input={"text": "$goal.text"}),
        task("second", "after_takeover", input={"text": "$first.text"}),
        agents=[],
    )
    data["agents"] = {name: f"tests.worker_agents:{name}"
                      for name in ("takes_over", "after_takeover")}
    try:
        with pytest.raises(FencedOut):
            run(store, data, {"text": "x"}, goal_id="fenced")
        assert worker_agents.CALLED == ["takes_over"]
        recorded = kinds(store, "fenced")
        assert recorded[-1] == "RunResumed"  # the other runner's event is the last word
        assert "AgentReturned" not in recorded
    finally:
        store.close()
