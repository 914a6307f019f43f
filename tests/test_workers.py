"""`baton submit` and `baton worker` (docs/reference.md, "Workers"), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from baton.store.eventstore import BatonStore, open_store
from baton.store.ownership import ownership_of
from tests.cli_support import ROOT, baton
from tests.support import kinds, plan, plan_file, task

PLAN = "examples/travel/plan.yaml"
TRIP = "@examples/travel/trip.json"
BERLIN = '{"origin": "LHR", "destination": "Berlin", "passengers": 2}'  # escalates its price


def recorded(store_url: str, goal_id: str) -> list[str]:
    store = open_store(store_url)
    try:
        return kinds(store, goal_id)
    finally:
        store.close()


def status_of(store_url: str, goal_id: str) -> str:
    result = baton("status", goal_id, "--json", store=store_url)
    assert result.code == 0, result.err
    status: str = result.json()["status"]
    return status


def test_submit_stores_the_goal_without_running_it(store_url: str) -> None:
    plain = baton("submit", PLAN, "--input", TRIP, store=store_url)
    assert plain.code == 0, plain.err
    goal_id = plain.out.strip()
    assert len(plain.out.splitlines()) == 1
    assert recorded(store_url, goal_id) == ["Started"]
    shaped = baton("submit", PLAN, "--input", TRIP, "--goal-id", "mine", "--json",
                   store=store_url)
    assert shaped.json() == {"goal_id": "mine", "status": "running"}
    again = baton("submit", PLAN, "--input", TRIP, "--goal-id", "mine", store=store_url)
    assert again.code == 2 and len(again.err.strip().splitlines()) == 1
    bad = baton("submit", PLAN, "--input", '{"origin": 3}', "--goal-id", "bad",
                store=store_url)
    assert bad.code == 2 and "Traceback" not in bad.err
    assert baton("status", "bad", store=store_url).code == 2  # nothing stored


def test_a_burst_worker_drives_every_submitted_goal_then_exits(store_url: str) -> None:
    ids = [baton("submit", PLAN, "--input", TRIP, store=store_url).out.strip()
           for _ in range(3)]
    worker = baton("worker", "--burst", "--concurrency", "2", store=store_url)
    assert worker.code == 0, worker.err
    for goal_id in ids:
        assert status_of(store_url, goal_id) == "completed"
        assert f"goal {goal_id}: completed" in worker.err  # one log line per goal event
    idle = baton("worker", "--burst", store=store_url)
    assert idle.code == 0 and "drove 0 goal(s)" in idle.err


def test_a_fork_made_without_run_is_driven_by_a_worker_like_a_submitted_goal(
    store_url: str,
) -> None:
    """docs/reference.md, `baton fork`: without `--run` the fork is stored like a submitted goal."""
    assert baton("run", PLAN, "--input", TRIP, "--goal-id", "first", store=store_url).code == 0
    forked = baton("fork", "first", "--at", "5", "--goal-id", "again", store=store_url)
    assert forked.code == 0, forked.err
    assert status_of(store_url, "again") == "running"
    worker = baton("worker", "--burst", store=store_url)
    assert worker.code == 0, worker.err
    assert "goal again: completed" in worker.err
    assert status_of(store_url, "again") == "completed"


def test_a_submitted_goal_replays_before_and_after_a_worker_drove_it(store_url: str) -> None:
    """`submit` decides nothing after `Started`; whoever drives the goal records its own
    observation first. Replay, re-execution and what-if must not decide there either: they
    did, and every goal a worker drove 'diverged at event 2'."""
    goal_id = baton("submit", PLAN, "--input", TRIP, store=store_url).out.strip()
    waiting = baton("replay", goal_id, "--json", store=store_url)
    assert waiting.code == 0 and waiting.json()["ok"], waiting.out
    assert baton("worker", "--burst", store=store_url).code == 0
    assert status_of(store_url, goal_id) == "completed"
    for flags in ((), ("--reexecute",), ("--plan", PLAN)):
        replayed = baton("replay", goal_id, *flags, "--json", store=store_url)
        assert replayed.code == 0, (flags, replayed.out, replayed.err)
        shown = replayed.json()
        assert shown["ok"] and shown["events"] == len(recorded(store_url, goal_id)), (flags, shown)


def test_a_worker_logs_why_a_goal_failed_or_waits_on_one_line_of_text(
    store_url: str, tmp_path: Path
) -> None:
    """The operator reading a worker's log at 2am sees which task and why, without a look-up;
    an agent's error is data: its ESC and newline neither reach the terminal nor split the
    line the log collector reads."""
    failing = plan_file(tmp_path, plan(task("a", "raises_with_brackets",
                                            input={"text": "$goal.text"},
                                            retry={"max_attempts": 1})))
    assert baton("submit", failing, "--input", '{"text": "x\\ny"}', "--goal-id", "f",
                 store=store_url).code == 0
    assert baton("submit", PLAN, "--input", BERLIN, "--goal-id", "berlin",
                 store=store_url).code == 0
    worker = baton("worker", "--burst", store=store_url)
    assert worker.code == 0, worker.err
    lines = worker.err.splitlines()
    assert [line.split(" INFO ", 1)[1] for line in lines if ": failed" in line] == [
        "goal f: failed — task 'a' failed: RuntimeError: bad value [/] in [bold]x y[/bold] "
        "\\x1b[2J"]
    assert "\x1b" not in worker.err
    assert any(line.endswith("goal berlin: waiting for a human on price (attempt 1: confidence: "
                             "0.63 is below min_confidence 0.7; on_low_confidence is escalate)")
               for line in lines), worker.err


def test_a_worker_continues_a_goal_a_human_resolved_without_resume(store_url: str) -> None:
    run = baton("run", PLAN, "--input", BERLIN, "--goal-id", "berlin", store=store_url)
    assert run.code == 3, run.err  # the price waits for a human
    untouched = baton("worker", "--burst", store=store_url)
    assert untouched.code == 0 and "drove 0 goal(s)" in untouched.err  # nothing to do yet
    resolved = baton("resolve", "berlin", "price", "--abandon", "--reason", "too dear",
                     store=store_url)
    assert resolved.code == 0, resolved.err
    worker = baton("worker", "--burst", store=store_url)
    assert worker.code == 0, worker.err
    assert "goal berlin: claimed" in worker.err
    assert status_of(store_url, "berlin") not in ("running", "waiting")
    assert "GoalResumed" in recorded(store_url, "berlin")


def test_drove_counts_distinct_goals_not_claims(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A goal claimed twice (driven until it waits for a human, then again once resolved) is
    one goal driven: "drove N goal(s)" counted claims, so a store of one goal said 2."""
    import logging

    from baton.runtime.loading import load_plan_file
    from baton.runtime.service import resolve_task, submit_goal
    from baton.runtime.worker import Worker
    from tests.test_chaos import wait_for

    caplog.set_level(logging.INFO, logger="baton.worker")
    store = open_store(store_url)
    try:
        submit_goal(store, load_plan_file(PLAN), json.loads(BERLIN), goal_id="berlin")
        worker = Worker(store=store, poll_s=0.05, refresh_s=0)
        returned: list[int] = []
        thread = threading.Thread(target=lambda: returned.append(worker.run()))
        thread.start()
        try:
            wait_for(lambda: worker.claims == 1, "the first claim to end (waiting for a human)")
            assert store.get("berlin").state.status == "waiting"
            resolve_task(store, "berlin", "price", action="abandon", reason="too dear", by="t")
            wait_for(lambda: worker.claims == 2, "the second claim to end")
        finally:
            worker.request_stop()
            thread.join(30)
        assert store.get("berlin").state.status not in ("running", "waiting")
        assert returned == [1]
        assert "worker stopped: drove 1 goal(s) in 2 claims" in caplog.text
    finally:
        store.close()


def chain_plan(tmp_path: Path, *, backoff_s: float = 0.0) -> str:
    tasks = [{"id": f"s{i}", "agent": "step", "input": {"text": "$goal.text" if i == 0
                                                        else f"$s{i - 1}.text"}}
             for i in range(4)]
    tasks[2]["agent"] = "flaky"
    tasks.append({"id": "book", "agent": "book", "side_effects": "idempotent",
                  "input": {"text": "$s3.text"}})
    data = {
        "version": 1, "name": "chain",
        "agents": {"step": "tests.agents:logged_step", "flaky": "tests.agents:logged_flaky",
                   "book": "tests.agents:logged_book"},
        "defaults": {"retry": {"max_attempts": 3, "backoff_s": backoff_s}},
        "tasks": tasks, "output": "$book",
    }
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_a_worker_takes_over_a_goal_whose_owner_died(store_url: str, tmp_path: Path) -> None:
    env = {"BATON_TEST_DIR": str(tmp_path)}
    killed = baton("run", chain_plan(tmp_path), "--input", '{"text": "x"}', "--goal-id", "dead",
                   store=store_url, env={**env, "BATON_CRASH_AT_EVENT": "6"})
    assert killed.code == -signal.SIGKILL
    worker = baton("worker", "--burst", store=store_url, env=env)
    assert worker.code == 0, worker.err
    assert "goal dead: claimed (resumed" in worker.err
    assert status_of(store_url, "dead") == "completed"


def test_a_worker_parks_a_goal_in_backoff_and_takes_it_up_when_due(
    store_url: str, tmp_path: Path
) -> None:
    """A burst leaves a goal parked when nothing else runs (it waited out the backoff, an hour
    as readily as a second); the first worker that looks once it fell due takes it up."""
    env = {"BATON_TEST_DIR": str(tmp_path)}
    plan = chain_plan(tmp_path, backoff_s=1.2)
    goal_id = baton("submit", plan, "--input", '{"text": "y"}', store=store_url).out.strip()
    worker = baton("worker", "--burst", store=store_url, env=env)
    assert worker.code == 0, worker.err
    assert f"goal {goal_id}: parked until its backoff falls due" in worker.err
    assert worker.err.count(f"goal {goal_id}: claimed") == 1
    assert "left 1 parked until a backoff falls due" in worker.err
    assert status_of(store_url, goal_id) == "running"
    store = open_store(store_url)
    try:
        due = store.get(goal_id).state.tasks["s2"].due_at
    finally:
        store.close()
    assert due is not None
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))  # not an assertion: the wait
    worker = baton("worker", "--burst", store=store_url, env=env)
    assert worker.code == 0, worker.err
    assert f"goal {goal_id}: claimed (resumed" in worker.err
    assert status_of(store_url, goal_id) == "completed"


def test_a_burst_does_not_wait_out_a_long_backoff(store_url: str, tmp_path: Path) -> None:
    """`--burst` exits once nothing is runnable: it waited the hour (QA: `timeout 20` killed it)."""
    plan, env = gone_agents_plan(tmp_path, defaults={
        "retry": {"max_attempts": 2, "backoff_s": 3600, "max_backoff_s": 3600}})
    plan_data = yaml.safe_load(Path(plan).read_text())
    plan_data["agents"]["up"] = "gone_agents:always_fails"
    Path(plan).write_text(yaml.safe_dump(plan_data))
    assert baton("submit", plan, "--input", '{"text": "hi"}', "--goal-id", "slow",
                 store=store_url, env=env).code == 0
    worker = baton("worker", "--burst", store=store_url, env=env, timeout=30)
    assert worker.code == 0, worker.err
    assert "goal slow: parked until its backoff falls due" in worker.err
    assert status_of(store_url, "slow") == "running"
    # Parked, its module then removed: a resumed goal's plan is loaded before it is claimed,
    # and not loading it is said once (it used to fail every claim round).
    remove_module(tmp_path)
    worker = baton("worker", "--burst", store=store_url, env=env, timeout=30)
    assert worker.code == 0, worker.err
    assert len([line for line in worker.err.splitlines() if "goal slow" in line]) == 1
    assert "left 1 whose plan does not load" in worker.err


def gone_agents_plan(tmp_path: Path, **extra: object) -> tuple[str, dict[str, str]]:
    """A plan whose agent lives in a module of its own (tmp_path/gone_agents.py), to remove."""
    (tmp_path / "gone_agents.py").write_text("from tests.agents import always_fails, upper\n")
    data = {"version": 1, "name": "gone", "agents": {"up": "gone_agents:upper"},
            "tasks": [{"id": "t", "agent": "up", "input": {"text": "$goal.text"}}],
            "output": "$t", **extra}
    plan = tmp_path / "gone.yaml"
    plan.write_text(yaml.safe_dump(data))
    return str(plan), {"PYTHONPATH": str(tmp_path), "BATON_TEST_DIR": str(tmp_path)}


def remove_module(tmp_path: Path) -> None:
    (tmp_path / "gone_agents.py").unlink()
    for cached in tmp_path.glob("__pycache__/gone_agents.*"):
        cached.unlink()


def test_a_goal_whose_agents_no_longer_import_is_said_once_and_left_alone(
    store_url: str, tmp_path: Path
) -> None:
    """It used to be claimed again and again (hundreds of identical errors a second) and kept
    `--burst` from ever exiting. Nothing is recorded: once the code is back, it runs."""
    plan, env = gone_agents_plan(tmp_path)
    assert baton("submit", plan, "--input", '{"text": "hi"}', "--goal-id", "gone1",
                 store=store_url, env=env).code == 0
    (tmp_path / "gone_agents.py").write_text("")  # imports, without the agent
    for _ in range(2):  # a new worker process tries once more
        worker = baton("worker", "--burst", store=store_url, env=env, timeout=30)
        assert worker.code == 0, worker.err
        said = [line for line in worker.err.splitlines() if "goal gone1" in line]
        assert len(said) == 1, worker.err
        assert "ERROR" in said[0] and "gone_agents:upper" in said[0], said
        assert "drove 0 goal(s); left 1 whose plan does not load" in worker.err
    assert recorded(store_url, "gone1") == ["Started"]  # no failure recorded
    gone_agents_plan(tmp_path)  # the code is fixed
    worker = baton("worker", "--burst", store=store_url, env=env, timeout=30)
    assert worker.code == 0 and "goal gone1: completed" in worker.err, worker.err


def test_a_goal_whose_agents_no_longer_import_can_be_cancelled_and_read(
    store_url: str, tmp_path: Path
) -> None:
    """Cancelling needs no agent: it refused with the import error (exit 2)."""
    plan, env = gone_agents_plan(tmp_path)
    assert baton("submit", plan, "--input", '{"text": "hi"}', "--goal-id", "gone2",
                 store=store_url, env=env).code == 0
    remove_module(tmp_path)
    cancelled = baton("cancel", "gone2", "--reason", "module removed", store=store_url, env=env)
    assert cancelled.code == 0, cancelled.err
    assert status_of(store_url, "gone2") == "cancelled"
    for command in (("audit", "gone2"), ("export", "gone2")):
        assert baton(*command, store=store_url, env=env).code == 0, command
    worker = baton("worker", "--burst", store=store_url, env=env, timeout=30)
    assert worker.code == 0 and "gone2" not in worker.err, worker.err


def test_a_task_of_a_goal_whose_agents_no_longer_import_can_be_abandoned(
    store_url: str, tmp_path: Path
) -> None:
    """Abandoning a task decides nothing an agent is needed for here (its dependant is
    skipped): `resolve --abandon` refused with the import error (exit 2)."""
    plan, env = gone_agents_plan(tmp_path)
    data = yaml.safe_load(Path(plan).read_text())
    data["agents"]["fails"] = "gone_agents:always_fails"
    data["tasks"] = [
        {"id": "t", "agent": "fails", "input": {"text": "$goal.text"}, "on_failure": "escalate",
         "retry": {"max_attempts": 1}},
        {"id": "u", "agent": "up", "input": {"text": "$t.text"}},
    ]
    data["output"] = "$u"
    Path(plan).write_text(yaml.safe_dump(data))
    run = baton("run", plan, "--input", '{"text": "hi"}', "--goal-id", "gone3",
                store=store_url, env=env)
    assert run.code == 3, run.err  # t waits for a human
    remove_module(tmp_path)
    resolved = baton("resolve", "gone3", "t", "--abandon", "--reason", "module removed",
                     store=store_url, env=env)
    assert resolved.code == 0, resolved.err
    assert recorded(store_url, "gone3")[-3:] == ["HumanResolved", "TaskAbandoned", "TaskSkipped"]
    worker = baton("worker", "--burst", store=store_url, env=env, timeout=30)  # changed: looked at
    assert worker.code == 0 and "left 1 whose plan does not load" in worker.err, worker.err


def waits_then_steps(tmp_path: Path, *, waits: str, then: str) -> str:
    """`wait` (side effects `waits`) blocks until tmp_path/release exists; `then` (side
    effects `then`) runs after it."""
    data = {
        "version": 1, "name": "waits",
        "agents": {"wait": "tests.agents:waits_for_file", "step": "tests.agents:logged_step"},
        "tasks": [{"id": "wait", "agent": "wait", "side_effects": waits,
                   "input": {"text": "$goal.text"}},
                  {"id": "then", "agent": "step", "side_effects": then,
                   "input": {"text": "$wait.text"}}],
        "output": "$then",
    }
    plan = tmp_path / "waits.yaml"
    plan.write_text(yaml.safe_dump(data))
    return str(plan)


def worker_in_its_agent(store_url: str, tmp_path: Path) -> subprocess.Popen[str]:
    """A `baton worker` process, returned once its goal's agent has been called."""
    env = {**os.environ, "BATON_STORE": store_url, "BATON_TEST_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "baton.cli", "worker"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (tmp_path / "calls.jsonl").exists():  # the agent has started: the goal is owned
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    return proc


def agents_called(tmp_path: Path) -> list[str]:
    lines = (tmp_path / "calls.jsonl").read_text().splitlines()
    return [json.loads(line)["agent"] for line in lines]


def wait_for_event(store_url: str, goal_id: str, kind: str, proc: subprocess.Popen[str]) -> None:
    """Return once the goal records an event of `kind` (the worker still running)."""
    deadline = time.monotonic() + 30
    while kind not in recorded(store_url, goal_id):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)


@pytest.mark.parametrize(("stop", "then"), [(signal.SIGTERM, "unsafe"), (signal.SIGINT, "none")])
def test_a_stopped_worker_finishes_recording_an_unsafe_attempt_and_dispatches_nothing_new(
    store_url: str, tmp_path: Path, stop: signal.Signals, then: str
) -> None:
    """Asked to stop while an unsafe attempt runs, the worker records `StopRequested` before
    it waits, then the attempt's outcome, and leaves: the save of that outcome dispatched the
    next task and the worker ran it (a stop started a side effect); left unrun instead, the
    next owner's crash rules would have escalated a task that never ran as outcome unknown.
    The next worker's `RunResumed` lifts the stop: the next task runs once, nothing escalated."""
    plan = waits_then_steps(tmp_path, waits="unsafe", then=then)
    assert baton("submit", plan, "--input", '{"text": "z"}', "--goal-id", "t",
                 store=store_url).code == 0
    proc = worker_in_its_agent(store_url, tmp_path)
    proc.send_signal(stop)
    wait_for_event(store_url, "t", "StopRequested", proc)  # said before the outcome
    (tmp_path / "release").write_text("")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    events = recorded(store_url, "t")
    assert events[events.index("StopRequested"):] == [
        "StopRequested", "AgentReturned", "OutputAccepted", "TaskReady"  # `then` stays ready
    ]
    assert events.count("TaskDispatched") == 1
    assert agents_called(tmp_path) == ["waits_for_file"]
    assert "goal t: left at a safe point (stopping)" in err
    audit = baton("audit", "t", store=store_url)
    assert "▸ StopRequested · the runner was asked to stop: it waits for the unsafe" in audit.out
    store = open_store(store_url)
    try:
        assert ownership_of(store).owner("t") is None
    finally:
        store.close()
    worker = baton("worker", "--burst", store=store_url, env={"BATON_TEST_DIR": str(tmp_path)})
    assert worker.code == 0, worker.err
    assert status_of(store_url, "t") == "completed"
    assert agents_called(tmp_path) == ["waits_for_file", "logged_step"]  # each exactly once
    events = recorded(store_url, "t")
    assert "TaskEscalated" not in events and "AttemptInterrupted" not in events
    assert events[events.index("TaskReady") + 1] == "RunResumed"  # dispatched by the next owner
    replayed = baton("replay", "t", store=store_url)
    assert replayed.code == 0, replayed.out + replayed.err
    # The attempt timeline draws the stop and the next owner's take-over across every row
    from baton.web.svg import timeline_svg
    from baton.web.timeline import timeline_of

    store = open_store(store_url)
    try:
        line = timeline_of(store.events("t"))
    finally:
        store.close()
    assert [mark.kind for mark in line.marks] == [
        "RunResumed", "StopRequested", "RunResumed", "GoalCompleted"]  # each worker's take-up
    picture = timeline_svg(line, line.tasks)
    assert [re.sub(r" at \+[^<]*", "", title) for title in re.findall(
        r'<line class="mark [^"]*"[^>]*><title>([^<]*)</title>', picture)] == [
        "resumed", "stop requested", "resumed", "goal completed"]


def stops_while_first_runs(first: str, **retry: object) -> dict[str, object]:
    """`first` (unsafe) asks its runner to stop while it runs; `unsafe` and `none` follow it."""
    from tests import worker_agents

    worker_agents.CALLED.clear()
    worker_agents.STOP_ASKED.clear()
    return {
        "version": 1, "name": "stops",
        "agents": {name: f"tests.worker_agents:{name}" for name in (first, "counted")},
        "tasks": [
            {"id": "first", "agent": first, "side_effects": "unsafe",
             "input": {"text": "$goal.text"}, **retry},
            {"id": "unsafe", "agent": "counted", "side_effects": "unsafe",
             "input": {"text": "$first.text"}},
            {"id": "none", "agent": "counted", "input": {"text": "$first.text"}},
        ],
    }


@pytest.mark.parametrize(("first", "retry"), [
    ("asks_to_stop", {}),
    ("asks_to_stop_and_fails_once", {"retry": {"max_attempts": 2, "backoff_s": 0}}),
])
def test_a_runner_asked_to_stop_unwoken_records_the_stop_with_the_outcome(
    store: BatonStore, first: str, retry: dict[str, object]
) -> None:
    """Asked to stop without being woken (a stopping `baton serve` asks so): the stop is
    recorded before the outcome that arrives, so that outcome's save dispatches nothing (the
    next tasks stay ready; a failure's zero-backoff retry waits, ready, too), and the runner
    leaves. The next owner's `RunResumed` lifts it and runs each task once; replay agrees."""
    from baton.domain.replay import replay
    from baton.runtime.loading import prepare_plan
    from baton.runtime.runner import Runner
    from baton.runtime.service import resume_goal, start_goal
    from tests import worker_agents

    loaded = prepare_plan(stops_while_first_runs(first, **retry))
    runner = Runner(store=store, loaded=loaded, should_stop=worker_agents.STOP_ASKED.is_set)
    left = start_goal(store, loaded, {"text": "z"}, goal_id="s", runner=runner)
    assert left.state.status == "running" and left.state.stop_requested
    called = worker_agents.CALLED
    assert called == [first]  # nothing run after the stop
    events = kinds(store, "s")
    at = events.index("StopRequested")
    assert events[at - 1] == "TaskDispatched" and events.count("TaskDispatched") == 1
    assert {t: left.state.tasks[t].status for t in ("first", "unsafe", "none")} == (
        {"first": "succeeded", "unsafe": "ready", "none": "ready"} if not retry
        else {"first": "ready", "unsafe": "pending", "none": "pending"}
    )
    goal = resume_goal(store, "s")
    assert goal.state.status == "completed"
    assert called == [first, *([first] if retry else []), "counted", "counted"]
    events = kinds(store, "s")
    assert "TaskEscalated" not in events and "AttemptInterrupted" not in events
    assert replay(list(store.events("s")), loaded.contracts).ok


def test_a_stopped_worker_leaves_at_once_when_no_unsafe_attempt_runs(
    store_url: str, tmp_path: Path
) -> None:
    """It waited for the attempt running (here up to 20 s), and the save of its outcome
    dispatched the next task, an unsafe one, which it then ran and waited for too: a stop
    started new side effects, and a SIGKILL after the grace period would leave one unknown.
    The attempt left running is re-run by the next owner (the crash rules)."""
    plan = waits_then_steps(tmp_path, waits="none", then="unsafe")
    assert baton("submit", plan, "--input", '{"text": "z"}', "--goal-id", "t",
                 store=store_url).code == 0
    proc = worker_in_its_agent(store_url, tmp_path)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)  # never released: left without waiting for it
    assert proc.returncode == 0, err
    assert "goal t: left with attempts in flight (stopping)" in err
    assert agents_called(tmp_path) == ["waits_for_file"]
    assert recorded(store_url, "t")[-1] == "TaskDispatched"
    assert status_of(store_url, "t") == "running"
    store = open_store(store_url)
    try:
        assert ownership_of(store).owner("t") is None
    finally:
        store.close()
    (tmp_path / "release").write_text("")
    worker = baton("worker", "--burst", store=store_url, env={"BATON_TEST_DIR": str(tmp_path)})
    assert worker.code == 0, worker.err
    assert status_of(store_url, "t") == "completed"
    assert agents_called(tmp_path) == ["waits_for_file", "waits_for_file", "logged_step"]


def test_a_worker_with_every_slot_taken_does_not_read_the_log(store_url: str) -> None:
    """Every save anywhere wakes a worker (NOTIFY on PostgreSQL, the poll on SQLite); with no
    slot free nothing it could read is claimable, so it reads nothing until a slot frees, and
    then drives what was waiting."""
    from datetime import UTC, datetime

    from baton.domain.goal import Goal
    from baton.runtime.loading import prepare_plan
    from baton.runtime.worker import Worker
    from tests import worker_agents

    data = {"version": 1, "name": "gated", "agents": {"g": "tests.worker_agents:gated"},
            "tasks": [{"id": "t", "agent": "g", "input": {"text": "$goal.text"}}],
            "output": "$t"}
    loaded = prepare_plan(data)
    store = open_store(store_url)
    worker_agents.GATE_ENTERED.clear()
    worker_agents.GATE_OPEN.clear()
    try:
        for index in range(3):
            store.save(Goal.start(goal_id=f"gated-{index}", plan=loaded.plan,
                                  goal_input={"text": "x"}, concurrency=1, at=datetime.now(UTC)))
        worker = Worker(store=store, concurrency=1, burst=True, poll_s=0.02, refresh_s=0)
        reads: list[int] = []
        wakes: list[int] = []
        follow, reap = store.recorder.select_notifications, worker._reap

        def counted_follow(*args: object, **kwargs: object) -> object:
            reads.append(1)
            return follow(*args, **kwargs)

        def counted_reap() -> None:
            wakes.append(1)
            reap()

        store.recorder.select_notifications = counted_follow  # type: ignore[method-assign]
        worker._reap = counted_reap  # type: ignore[method-assign]
        driving = threading.Thread(target=worker.run, daemon=True)
        driving.start()
        assert worker_agents.GATE_ENTERED.wait(10)
        reads_before, wakes_before = len(reads), len(wakes)
        done = threading.Event()
        for _ in range(500):  # until the loop has woken five times with its slot taken
            if len(wakes) >= wakes_before + 5:
                break
            done.wait(0.02)
        assert len(wakes) >= wakes_before + 5
        assert len(reads) == reads_before  # woken, and read nothing
        worker_agents.GATE_OPEN.set()
        driving.join(30)
        assert not driving.is_alive()
        assert worker.driven == 3
        assert all(kinds(store, f"gated-{i}")[-1] == "GoalCompleted" for i in range(3))
    finally:
        worker_agents.GATE_OPEN.set()
        store.close()


def test_a_worker_starts_from_the_read_models_not_the_first_event(store_url: str) -> None:
    """Starting costs what the read models have not applied yet, not every event ever stored:
    the goals not ended as of their position are known from them, the rest from the log."""
    import json

    from baton import projections
    from baton.runtime.loading import prepare_plan
    from baton.runtime.service import submit_goal
    from baton.runtime.worker import Worker

    assert baton("run", PLAN, "--input", TRIP, "--goal-id", "done", store=store_url).code == 0
    assert baton("submit", PLAN, "--input", TRIP, "--goal-id", "queued",
                 store=store_url).code == 0  # the read models are caught up by the command
    store = open_store(store_url)
    try:
        with projections.open_views(store.app) as views:
            position, open_goals = views.open_goals(store.app.name)
        assert position > 0 and open_goals == {"queued": 1}
        loaded = prepare_plan(yaml.safe_load((ROOT / PLAN).read_text()))
        trip = json.loads((ROOT / TRIP.lstrip("@")).read_text())
        submit_goal(store, loaded, trip, goal_id="late")  # after the read models' position
        done_events = len(kinds(store, "done"))
        starts: list[int] = []
        select = store.recorder.select_notifications

        def spied(start: int, *args: object, **kwargs: object) -> object:
            starts.append(start)
            return select(start, *args, **kwargs)  # type: ignore[arg-type]

        store.recorder.select_notifications = spied  # type: ignore[method-assign]
        worker = Worker(store=store, burst=True, refresh_s=0)
        assert worker.run() == 2
        assert starts and min(starts) == position + 1
        assert kinds(store, "queued")[-1] == kinds(store, "late")[-1] == "GoalCompleted"
        assert len(kinds(store, "done")) == done_events
    finally:
        store.close()


def test_a_wake_up_does_not_look_at_goals_that_wait_unchanged(store_url: str) -> None:
    """Every save anywhere wakes every worker: with thousands of goals waiting for a human,
    a wake-up must look only at what changed since (here, one new goal), not at all of them."""
    from concurrent.futures import ThreadPoolExecutor

    from baton.runtime.worker import Worker, _Seen

    assert baton("run", PLAN, "--input", BERLIN, "--goal-id", "berlin",
                 store=store_url).code == 3  # waits for a human
    store = open_store(store_url)
    pool = ThreadPoolExecutor(1)
    try:
        worker = Worker(store=store, concurrency=1, refresh_s=0)
        for n in range(5_000):  # looked at once already: waiting for a human, no timer
            worker.versions[f"waiting-{n}"] = 7
            worker._see(f"waiting-{n}", _Seen(7, None))
        looked: list[str] = []
        worth = worker._worth_a_look

        def counted(goal_id: str, version: int, now: float) -> bool:
            looked.append(goal_id)
            return worth(goal_id, version, now)

        worker._worth_a_look = counted  # type: ignore[method-assign]
        worker.versions["berlin"] = store.get("berlin").version  # new to this worker
        worker.fresh["berlin"] = None
        assert worker._claim(pool) == 0  # nothing to drive: it waits for a human too
        assert looked == ["berlin"]
        looked.clear()
        assert worker._claim(pool) == 0 and looked == []  # the next wake-up: none
        assert worker._timeout() == worker.poll_s
    finally:
        pool.shutdown()
        store.close()


def test_a_worker_keeps_a_bounded_number_of_plans_loaded(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plans made per goal (by a template, say) must not pile up in a worker that runs for
    months: it keeps the most recently used ones and loads the others again when needed."""
    from baton.runtime import worker as worker_module
    from baton.runtime.loading import prepare_plan
    from baton.runtime.service import submit_goal
    from baton.runtime.worker import Worker

    monkeypatch.setattr(worker_module, "PLANS_KEPT", 2)
    store = open_store(store_url)
    try:
        for index in range(4):
            data = {"version": 1, "name": f"made-for-goal-{index}",
                    "agents": {"up": "tests.agents:upper"},
                    "tasks": [{"id": "t", "agent": "up", "input": {"text": "$goal.text"}}],
                    "output": "$t"}
            submit_goal(store, prepare_plan(data), {"text": "hi"}, goal_id=f"g{index}")
        worker = Worker(store=store, burst=True, refresh_s=0)
        assert worker.run() == 4
        assert all(kinds(store, f"g{index}")[-1] == "GoalCompleted" for index in range(4))
        assert len(worker.plans) == 2
    finally:
        store.close()


def test_a_worker_drives_goals_while_its_read_model_catch_up_runs(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catch-up of a busy store's read models can take a good part of a second; run in the
    worker's loop, it kept the worker from claiming meanwhile (with four workers, the one that
    caught up for the others drove 4 goals of 200). It runs beside the loop, and the last one
    still completes before the worker returns."""
    from baton.readmodels import reading
    from baton.runtime.loading import prepare_plan
    from baton.runtime.service import submit_goal
    from baton.runtime.worker import Worker

    entered, release = threading.Event(), threading.Event()
    catch_up = reading.Refresher.__call__

    def held_catch_up(self: reading.Refresher) -> int:
        entered.set()
        assert release.wait(30), "the test never released the catch-up"
        return catch_up(self)

    monkeypatch.setattr(reading.Refresher, "__call__", held_catch_up)
    data = {"version": 1, "name": "one", "agents": {"up": "tests.agents:upper"},
            "tasks": [{"id": "t", "agent": "up", "input": {"text": "$goal.text"}}],
            "output": "$t"}
    store = open_store(store_url)
    try:
        submit_goal(store, prepare_plan(data), {"text": "first"}, goal_id="first")
        worker = Worker(store=store, concurrency=1, poll_s=0.02, refresh_s=0.01)
        running = threading.Thread(target=worker.run, daemon=True)
        running.start()
        assert entered.wait(30), "no catch-up started"
        for index in range(3):  # submitted while the catch-up is held: driven all the same
            submit_goal(store, prepare_plan(data), {"text": "x"}, goal_id=f"later-{index}")
        deadline = time.monotonic() + 30
        while worker.driven < 4:
            assert time.monotonic() < deadline, f"drove {worker.driven} of 4 while held"
            time.sleep(0.02)
        assert not release.is_set()
        worker.request_stop()
        release.set()
        running.join(30)
        assert not running.is_alive()
        with reading.read(store) as models:  # the read models themselves: the last catch-up ran
            assert {row["goal_id"]: row["status"] for row in models.goals()} == {
                goal_id: "completed" for goal_id in ("first", "later-0", "later-1", "later-2")}
    finally:
        release.set()
        store.close()


def test_a_worker_listens_again_after_its_notify_connection_is_cut(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server restart or a terminated session stopped the NOTIFY listener for good: the
    worker polled for the rest of its life. It connects again, and NOTIFY wakes it again."""
    import psycopg

    from baton.runtime import worker as worker_module
    from baton.runtime.loading import prepare_plan
    from baton.runtime.service import submit_goal
    from baton.runtime.worker import Worker
    from tests.conftest import PG_URL

    monkeypatch.setattr(worker_module, "LISTEN_RETRY_S", 0.05)
    name = f"baton {os.getpid()} listener"

    def listeners() -> list[int]:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                                (name,)).fetchall()
        return [row[0] for row in rows]

    def until(check: object) -> object:
        deadline = time.monotonic() + 30
        while not (found := check()):  # type: ignore[operator]
            assert time.monotonic() < deadline, "not within 30 s"
            time.sleep(0.02)
        return found

    data = {"version": 1, "name": "one", "agents": {"up": "tests.agents:upper"},
            "tasks": [{"id": "t", "agent": "up", "input": {"text": "$goal.text"}}],
            "output": "$t"}
    store = open_store(postgres_url)
    worker = Worker(store=store, concurrency=1, poll_s=120, refresh_s=0)  # no poll in time
    running = threading.Thread(target=worker.run, daemon=True)
    try:
        before = set(listeners())  # an earlier test's worker of this process, still closing
        running.start()
        [first] = until(lambda: [pid for pid in listeners() if pid not in before])  # type: ignore[misc]
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (first,))
        until(lambda: [pid for pid in listeners() if pid not in before | {first}])
        submit_goal(store, prepare_plan(data), {"text": "hi"}, goal_id="woken")
        until(lambda: worker.driven == 1)  # woken by NOTIFY: the poll is two minutes away
        assert kinds(store, "woken")[-1] == "GoalCompleted"
    finally:
        worker.request_stop()
        running.join(30)
        store.close()
    assert not running.is_alive()


def test_a_goal_whose_plan_does_not_load_is_tried_again_on_a_timer(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A transient import failure (a dependency's server down, a deploy half done) left the
    goal alone until its events changed or the worker restarted. It is looked at again on a
    long timer, said again only when the problem changes, and driven once the code imports."""
    import logging
    import uuid

    from baton.runtime import worker as worker_module
    from baton.runtime.loading import prepare_plan
    from baton.runtime.service import submit_goal
    from baton.runtime.worker import Worker

    module = f"flaky_import_{uuid.uuid4().hex[:8]}"
    source = tmp_path / f"{module}.py"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setattr(worker_module, "UNLOADABLE_RETRY_S", 0.05)

    def code(text: str) -> None:
        # Whole or not at all (a rename): the worker looks every 0.05 s, and a file caught
        # half-written imported as empty, a problem the test did not expect to be said.
        draft = tmp_path / f"{module}.draft"
        draft.write_text(text)
        os.replace(draft, source)
        sys.modules.pop(module, None)

    def until(check: object) -> None:
        deadline = time.monotonic() + 30
        while not check():  # type: ignore[operator]
            assert time.monotonic() < deadline, "not within 30 s"
            time.sleep(0.02)

    code("from tests.agents import upper\n")
    data = {"version": 1, "name": "flaky", "agents": {"up": f"{module}:upper"},
            "tasks": [{"id": "t", "agent": "up", "input": {"text": "$goal.text"}}],
            "output": "$t"}
    store = open_store(store_url)
    submit_goal(store, prepare_plan(data), {"text": "hi"}, goal_id="flaky")
    code("raise ImportError('the licence server is down')\n")
    worker = Worker(store=store, concurrency=1, poll_s=0.02, refresh_s=0)
    looks: list[str] = []
    due = worker._due

    def counted(goal_id: str) -> object:
        looks.append(goal_id)
        return due(goal_id)

    worker._due = counted  # type: ignore[method-assign,assignment]

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.levelno == logging.ERROR and "goal flaky" in r.getMessage()]

    caplog.set_level(logging.ERROR, logger="baton.worker")
    running = threading.Thread(target=worker.run, daemon=True)
    try:
        running.start()
        until(lambda: looks.count("flaky") >= 3)  # looked at again, its events unchanged
        assert len(said()) == 1 and "the licence server is down" in said()[0], said()
        code("raise ImportError('still down: maintenance until 02:00')\n")
        until(lambda: len(said()) == 2)  # a new problem is said
        assert "maintenance until 02:00" in said()[1]
        looked = looks.count("flaky")
        until(lambda: looks.count("flaky") >= looked + 2)
        assert len(said()) == 2  # the same problem is not said again
        assert recorded(store_url, "flaky") == ["Started"]  # nothing recorded meanwhile
        code("from tests.agents import upper\n")  # the code is fixed
        until(lambda: worker.driven == 1)
        assert kinds(store, "flaky")[-1] == "GoalCompleted"
    finally:
        worker.request_stop()
        running.join(30)
        store.close()
    assert not running.is_alive()


def test_a_submitted_goal_is_decided_when_a_worker_takes_it_not_when_it_was_submitted(
    store_url: str,
) -> None:
    """The worker decided right after `Started`, so its first dispatches carried the time the
    goal was submitted: after an hour in the queue, `audit` showed them an hour early and the
    attempts seemed to last the hour. It records its own observation first, as `resume` does."""
    from datetime import timedelta

    from baton.domain.goal import Goal
    from baton.runtime.loading import prepare_plan
    from baton.runtime.worker import Worker

    data = {"version": 1, "name": "one", "agents": {"up": "tests.agents:upper"},
            "tasks": [{"id": "t", "agent": "up", "input": {"text": "$goal.text"}}],
            "output": "$t"}
    submitted = datetime.now(UTC) - timedelta(hours=1)  # an hour in the queue
    store = open_store(store_url)
    try:
        store.save(Goal.start(goal_id="queued", plan=prepare_plan(data).plan,
                              goal_input={"text": "x"}, concurrency=1, at=submitted))
        taken = datetime.now(UTC)
        assert Worker(store=store, burst=True, refresh_s=0).run() == 1
        events = list(store.events("queued"))
        assert [type(e).__name__ for e in events[:2]] == ["Started", "RunResumed"]
        [dispatched] = [e for e in events if type(e).__name__ == "TaskDispatched"]
        assert dispatched.timestamp >= taken
    finally:
        store.close()
    replayed = baton("replay", "queued", "--json", store=store_url)
    assert replayed.code == 0 and replayed.json()["ok"], replayed.out


def test_a_goal_cancelled_elsewhere_frees_its_worker_slot_while_its_agent_hangs(
    store_url: str,
) -> None:
    """`baton cancel` records the end at once, but the worker driving the goal waited for its
    agent to return (a hung one: for ever) before it let go of the slot and the lock."""
    from baton.runtime.loading import prepare_plan
    from baton.runtime.service import cancel_goal, submit_goal
    from baton.runtime.worker import Worker
    from tests import agents

    data = {"version": 1, "name": "hangs", "agents": {"h": "tests.agents:hangs"},
            "tasks": [{"id": "t", "agent": "h", "input": {"text": "$goal.text"}}],
            "output": "$t"}
    agents.CALLS.clear()
    store = open_store(store_url)
    try:
        submit_goal(store, prepare_plan(data), {"text": "x"}, goal_id="stuck")
        worker = Worker(store=store, concurrency=1, burst=True, refresh_s=0, watch_s=0.05)
        running = threading.Thread(target=worker.run, daemon=True)
        running.start()
        deadline = time.monotonic() + 20  # the agent hangs for 30 s
        while not agents.CALLS["hangs"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        cancel_goal(store, "stuck", reason="it hangs", by="ops")
        running.join(20)
        assert not running.is_alive(), "the worker still holds the cancelled goal"
        assert kinds(store, "stuck")[-1] == "GoalCancelled"
        assert ownership_of(store).owner("stuck") is None
    finally:
        store.close()


def test_a_store_blip_while_an_agent_runs_does_not_make_the_worker_give_up_the_goal(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look for a cancel made elsewhere (watch_s) must not turn a moment without the store
    into leaving the goal: its attempt would be dispatched again (an unsafe one escalated)."""
    from baton.domain.goal import Goal
    from baton.runtime.loading import prepare_plan
    from baton.runtime.worker import Worker
    from baton.store.eventstore import StoreError
    from tests import worker_agents

    data = {"version": 1, "name": "gated", "agents": {"g": "tests.worker_agents:gated"},
            "tasks": [{"id": "t", "agent": "g", "input": {"text": "$goal.text"}}],
            "output": "$t"}
    worker_agents.GATE_ENTERED.clear()
    worker_agents.GATE_OPEN.clear()
    store = open_store(store_url)
    try:
        store.save(Goal.start(goal_id="blip", plan=prepare_plan(data).plan,
                              goal_input={"text": "x"}, concurrency=1, at=datetime.now(UTC)))
        worker = Worker(store=store, concurrency=1, burst=True, refresh_s=0, watch_s=0.01)
        running = threading.Thread(target=worker.run, daemon=True)
        running.start()
        assert worker_agents.GATE_ENTERED.wait(10)
        looks: list[int] = []
        latest_topics = store.latest_topics

        def gone(goal_ids: object) -> dict[str, str]:
            looks.append(1)
            raise StoreError("store postgresql://db/x: connection refused")

        monkeypatch.setattr(store, "latest_topics", gone)
        deadline = time.monotonic() + 10
        while len(looks) < 3:  # the runner looked, and the store did not answer, three times
            assert time.monotonic() < deadline
            time.sleep(0.01)
        monkeypatch.setattr(store, "latest_topics", latest_topics)
        worker_agents.GATE_OPEN.set()
        running.join(30)
        assert not running.is_alive()
        recorded_kinds = kinds(store, "blip")
        assert recorded_kinds[-1] == "GoalCompleted"
        assert recorded_kinds.count("TaskDispatched") == 1  # never given up and re-run
    finally:
        worker_agents.GATE_OPEN.set()
        store.close()


def test_a_worker_whose_saves_the_store_refuses_leaves_the_goal_alone_for_a_while(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only role or replica: reads work, every save is refused.
    Claimed again at once, the goal was claimed and refused hundreds of times a second."""
    from baton.runtime.worker import Worker
    from baton.store.eventstore import StoreError

    goal_id = baton("submit", PLAN, "--input", TRIP, store=sqlite_url).out.strip()
    store = open_store(sqlite_url)
    try:
        refusals: list[int] = []
        save = store.save

        def refused_five_times(goal: object) -> object:
            if len(refusals) < 5:
                refusals.append(1)
                raise StoreError("store x: cannot execute INSERT in a read-only transaction")
            return save(goal)  # type: ignore[arg-type]

        store.save = refused_five_times  # type: ignore[method-assign]
        caplog.set_level("INFO", logger="baton.worker")
        Worker(store=store, burst=True, refresh_s=0).run()
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert errors == [f"goal {goal_id}: store x: cannot execute INSERT in a read-only "
                          "transaction (looked at again in 1s)"]
        assert kinds(store, goal_id) == ["Started"]  # left for a later look, not completed
    finally:
        store.close()
