"""Live progress of `baton run` / `resume`: what it says, on a terminal only, never in JSON."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from baton.cli.progress import describe
from baton.history.runfile import read_run
from baton.web.goal_view import state_at
from tests.cli_support import ROOT, baton

GOLDEN = Path(__file__).parent / "golden"
TRIP = ["examples/travel/plan.yaml", "--input", "@examples/travel/trip.json"]


def test_describe_a_backoff_and_the_budget() -> None:
    run = read_run(GOLDEN / "retried.jsonl")
    state = state_at(run.events, 5).state  # after RetryScheduled
    due = state.tasks["a"].due_at
    assert due is not None
    lines = describe(state, due - timedelta(seconds=0.25))
    assert lines[0].startswith("goal retried · test-plan · running · ")
    assert lines[1] == "tasks 0/2 done · 0 running · 1 waiting · 0 retries"
    assert lines[2] == "budget attempts 1 · tokens 0 · cost $0"
    assert lines[3] == f"waiting: a backs off until {due:%H:%M:%S} (0.2s)"


def test_describe_a_human_wait_and_caps() -> None:
    run = read_run(GOLDEN / "travel.jsonl")
    state = state_at(run.events, len(run.events)).state
    lines = describe(state, state.now)
    assert lines[1] == "tasks 4/4 done · 0 running · 0 waiting · 0 retries"
    assert lines[2].startswith(
        "budget attempts 4/20 · tokens 360/10000 · cost $0.00072/0.05 · time 0s/300s")
    escalated = read_run(GOLDEN / "escalated.jsonl")
    waiting = state_at(escalated.events, 15).state  # GoalSuspended
    assert "waiting: a human is needed on a (baton escalations)" in describe(
        waiting, waiting.now)


def _on_a_terminal(*args: str, store: str) -> str:
    """Run `baton` with stdout on a pseudo-terminal; everything it drew there."""
    primary, secondary = os.openpty()
    env = {**os.environ, "BATON_STORE": store, "TERM": "xterm", "COLUMNS": "160"}
    proc = subprocess.Popen([sys.executable, "-m", "baton.cli", *args], cwd=ROOT, env=env,
                            stdout=secondary, stderr=subprocess.PIPE)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError as exc:  # the terminal closed: the process has exited
            if exc.errno != errno.EIO:
                raise
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    return b"".join(chunks).decode()


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")


def test_run_on_a_terminal_shows_progress(tmp_path: Path) -> None:
    drawn = _plain(_on_a_terminal("run", *TRIP, "--goal-id", "g1",
                                  store=f"sqlite:///{tmp_path}/b.db"))
    assert "goal g1 · trip-booking · running" in drawn
    assert "budget attempts 1/20" in drawn
    assert "tasks 4/4 done · 0 running · 0 waiting · 0 retries" in drawn
    assert "completed" in drawn  # then the result, as without a terminal


def test_resume_on_a_terminal_shows_progress(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "version: 1\nname: escalating\n"
        "agents: {always_fails: 'tests.agents:always_fails', upper: 'tests.agents:upper'}\n"
        "tasks:\n"
        "  - {id: a, agent: always_fails, input: {text: $goal.text}, on_failure: escalate,\n"
        "     retry: {max_attempts: 1}}\n"
        "  - {id: b, agent: upper, input: {text: $a.text}}\n"
    )
    store = f"sqlite:///{tmp_path}/b.db"
    assert baton("run", str(plan), "--input", '{"text": "x"}', "--goal-id", "g",
                 store=store).code == 3
    assert baton("resolve", "g", "a", "--output", '{"text": "ok"}', "--reason", "by hand",
                 store=store).code == 0
    drawn = _plain(_on_a_terminal("resume", "g", store=store))
    assert "goal g · escalating · running" in drawn
    assert "tasks 2/2 done" in drawn


def test_json_on_a_terminal_is_only_json(tmp_path: Path) -> None:
    drawn = _on_a_terminal("run", *TRIP, "--goal-id", "g1", "--json",
                           store=f"sqlite:///{tmp_path}/b.db")
    assert json.loads(drawn.replace("\r", ""))["status"] == "completed"


def test_no_progress_when_stdout_is_not_a_terminal(tmp_path: Path) -> None:
    result = baton("run", *TRIP, "--goal-id", "g1", store=f"sqlite:///{tmp_path}/b.db")
    assert result.code == 0
    assert "budget" not in result.out and "budget" not in result.err
    resumed = _plain(_on_a_terminal("resume", "g1", store=f"sqlite:///{tmp_path}/b.db"))
    assert "budget" not in resumed  # an ended goal: nothing to drive, nothing drawn
