"""What an SRE running workers on PostgreSQL found: a password in messages, a silent stop, a
stop that waited for the store, a slow reconnect, outcomes lost unsaid, an exiting import."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from baton.store.eventstore import describe_store, open_store
from baton.store.ownership import FencedOut
from tests import worker_agents
from tests.cli_support import baton
from tests.support import kinds, plan, run, task
from tests.test_workers import recorded, waits_then_steps, worker_in_its_agent


@pytest.mark.parametrize("url, secret", [
    ("postgresql://sre@127.0.0.1:1/db?password=hunter2", "hunter2"),
    ("postgresql://sre@127.0.0.1:1/db?schema=s&password=hunter2&sslmode=disable", "hunter2"),
    ("postgresql://sre:hunter2@127.0.0.1:1/db?sslpassword=keypass", "keypass"),
    ("postgresql://sre:hunter2@127.0.0.1:1/db?sslpassword=keypass", "hunter2"),
])
def test_a_password_given_as_a_url_parameter_is_masked_like_one_in_the_netloc(
    url: str, secret: str
) -> None:
    shown = describe_store(url)
    assert secret not in shown and "***" in shown
    unchanged = "postgresql://sre@h/db?schema=password"
    assert describe_store(unchanged) == unchanged


def test_a_store_that_refuses_the_connection_never_prints_a_url_parameter_password() -> None:
    # Port 1: nothing listens there; the error names the store, password masked.
    result = baton("status", store="postgresql://sre@127.0.0.1:1/db?schema=x&password=hunter2")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "hunter2" not in result.err and "password=***" in result.err


def test_a_stopping_worker_says_so_at_once_and_names_the_unsafe_attempt_it_waits_for(
    store_url: str, tmp_path: Path
) -> None:
    """SIGTERM with an unsafe attempt in flight: the worker waits for it (up to its timeout)
    and said nothing until it left, so an operator (or a supervisor's stop timeout) took the
    silence for a hung worker and SIGKILLed it, leaving the outcome unknown. It says at once
    that it heard the stop, which goal waits for which attempt, and so for a second stop."""
    plan = waits_then_steps(tmp_path, waits="unsafe", then="none")
    assert baton("submit", plan, "--input", '{"text": "z"}', "--goal-id", "t",
                 store=store_url).code == 0
    proc = worker_in_its_agent(store_url, tmp_path)
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")))
    reader.start()

    def said(text: str) -> bool:
        deadline = time.monotonic() + 30
        while not any(text in line for line in list(lines)):
            if proc.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    try:
        proc.send_signal(signal.SIGTERM)
        assert said("INFO stopping: taking no new goal; leaving the 1 goal(s) driven here")
        assert said("goal t: stopping: waits for its unsafe attempt(s) in flight (wait #1)")
        assert "StopRequested" in recorded(store_url, "t")
        proc.send_signal(signal.SIGTERM)
        assert said("INFO stopping now: leaving each goal after its current save")
        assert said("goal t: left with attempts in flight (stopping): wait #1 (unsafe); the "
                    "next owner runs none and idempotent ones again (same key) and escalates "
                    "unsafe ones as outcome unknown")
    finally:
        (tmp_path / "release").write_text("")
        proc.wait(timeout=60)
        reader.join(timeout=10)
    assert proc.returncode == 0, "".join(lines)
    assert all(line.count("\n") == 1 for line in lines)


def test_a_worker_names_the_store_it_drives_in_its_first_line(postgres_url: str) -> None:
    """A worker given a misspelt ?schema= creates it and idles there for ever, its log saying
    nothing of where it looks: the first line names the store, its password masked."""
    url = f"{postgres_url}&password=hunter2"
    worker = baton("worker", "--burst", store=url, timeout=60)
    assert worker.code == 0, worker.err
    first = worker.err.splitlines()[0]
    assert "worker started: 4 goal(s) at a time" in first
    assert first.endswith(f" on {describe_store(url)}") and "hunter2" not in worker.err


def test_a_command_the_store_failed_does_not_catch_up_nor_say_the_events_are_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL stopped under `baton run`: the failing save ended it (exit 2), but first the
    catch-up waited for the store as long again, then warned 'read models not brought up to
    date: … (the events are stored; …)' above the error saying the last save was not."""
    from baton.cli import commands
    from baton.cli.main import main
    from baton.readmodels import reading
    from baton.store.eventstore import StoreError

    url = f"sqlite:///{tmp_path}/b.db"
    assert main(["--store", url, "submit", "examples/travel/plan.yaml",
                 "--input", "@examples/travel/trip.json", "--goal-id", "g"]) == 0

    def store_went_away(store: object, goal_id: str, **_: object) -> object:
        raise StoreError(f"store {url}: couldn't get a connection after 5.00 sec")

    caught_up: list[object] = []
    monkeypatch.setattr(commands.goals, "resume_goal", store_went_away)
    monkeypatch.setattr(reading, "refresh", lambda store: caught_up.append(store))
    capsys.readouterr()
    assert main(["--store", url, "resume", "g"]) == 2
    err = capsys.readouterr().err
    assert err == f"baton: error: store {url}: couldn't get a connection after 5.00 sec\n"
    assert caught_up == []


def test_a_worker_stopped_while_the_store_is_down_leaves_without_waiting_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`systemctl stop` during a database outage: every turn of the loop read the log first,
    failed, and went round again before looking at the stop, so the worker stayed until the
    store came back (or the supervisor's SIGKILL)."""
    from baton.runtime.worker import Worker

    store = open_store(f"sqlite:///{tmp_path}/b.db")
    worker = Worker(store=store, refresh_s=0)
    store_down = threading.Event()
    store_down.set()

    def follow() -> None:
        if store_down.is_set():
            raise OSError("couldn't get a connection after 5.00 sec")

    worker._follow = follow  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="baton.worker")
    running = threading.Thread(target=worker.run)
    running.start()
    try:
        deadline = time.monotonic() + 30
        while "cannot read the store" not in caplog.text:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        worker.request_stop()
        running.join(timeout=10)
        assert not running.is_alive()
        assert "stopping: taking no new goal (none driven here)" in caplog.text
    finally:
        store_down.clear()  # without the fix: lets the loop see the stop
        running.join(timeout=30)
        store.close()


@pytest.mark.postgres
def test_the_pool_of_a_plain_postgres_url_gives_a_lost_connection_up_in_seconds(
    postgres_url: str,
) -> None:
    """After a 40 s outage the pool's one growing connection was in psycopg_pool's backoff
    (1, 2, 4 … s, for 5 minutes): reads failed for 18 s more after the server was back (a
    minute after a longer one), every worker logging 'cannot read the store'. Given up after
    RECONNECT_TIMEOUT_S, the next request opens a connection at once (back in about 1 s). A
    URL with no other libpq parameter went through eventsourcing's own factory, untouched."""
    from baton.store.postgres import RECONNECT_TIMEOUT_S

    store = open_store(postgres_url)
    try:
        pool = store.app.factory.datastore.pool  # type: ignore[attr-defined]
        assert pool.reconnect_timeout == RECONNECT_TIMEOUT_S
    finally:
        store.close()


def _failing_saves_of_results(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store goes down as an agent's result is saved (down past a save's retries)."""
    from baton.store.eventstore import StoreError

    real_save = store.save

    def save(goal: Any) -> Any:
        if any(type(e).__name__ == "AgentReturned" for e in goal.pending_events):
            raise StoreError("store postgresql://db/baton: couldn't get a connection after 5.00 s")
        return real_save(goal)

    monkeypatch.setattr(store, "save", save)


def test_a_save_the_store_fails_names_the_agent_outcomes_it_could_not_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL down for longer than a save's retries while an unsafe charge ran: the worker
    logged only the store's error, and the next owner escalated the charge as outcome unknown,
    though this runner had seen it return. The error now names what it saw."""
    from baton.store.eventstore import StoreError

    store = open_store(f"sqlite:///{tmp_path}/b.db")
    _failing_saves_of_results(store, monkeypatch)
    data = plan(task("pay", "upper", input={"text": "$goal.text"}, side_effects="unsafe"))
    try:
        with pytest.raises(StoreError) as failed:
            run(store, data, {"text": "x"}, goal_id="g")
        assert str(failed.value) == (
            "store postgresql://db/baton: couldn't get a connection after 5.00 s; not recorded, "
            'so the goal holds these unsafe attempts as outcome unknown: pay #1 returned '
            '{"text": "X"}')
        assert kinds(store, "g")[-1] == "TaskDispatched"
    finally:
        store.close()


def test_an_agents_module_that_exits_as_it_is_imported_is_a_plan_problem_not_the_workers_exit(
    tmp_path: Path,
) -> None:
    """`sys.exit("API_KEY missing")` in an agents' module: the worker ended with its code (3,
    which says "waits for a human"), without a line saying why, and a supervisor restarted it
    into the same import for ever, the other goals never driven. Now the goal is left alone as
    one whose plan does not load, and `validate` names the exit."""
    module = tmp_path / "exits_on_import.py"
    module.write_text("from pydantic import BaseModel\n\n\nclass T(BaseModel):\n    text: str\n\n\n"
                      "def echo(inp: T) -> T:\n    return inp\n")
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text("version: 1\nname: exits\nagents: {echo: exits_on_import:echo}\n"
                         "tasks: [{id: e, agent: echo, input: {text: $goal.text}}]\n")
    url, env = f"sqlite:///{tmp_path}/b.db", {"PYTHONPATH": str(tmp_path)}
    assert baton("submit", str(plan_path), "--input", '{"text": "x"}', "--goal-id", "g",
                 store=url, env=env).code == 0
    module.write_text(module.read_text() + "\nimport sys\nsys.exit(3)\n")
    worker = baton("worker", "--burst", store=url, env=env, timeout=60)
    assert worker.code == 0, worker.err
    said = [line for line in worker.err.splitlines() if "ERROR goal g:" in line]
    assert len(said) == 1 and said[0].endswith(
        "exits_on_import:echo: ImportError: the module called sys.exit(3) as it was imported")
    checked = baton("validate", str(plan_path), env=env)
    assert checked.code == 2 and "called sys.exit(3)" in checked.out + checked.err


def test_a_fenced_runner_names_the_unsafe_attempts_still_running_in_it(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fenced on another task's outcome while an unsafe charge still ran here: the charge's
    result, when it came, was dropped unsaid, and the next owner escalated it as outcome
    unknown. The fence names it as in flight here, its outcome recorded by no one."""
    monkeypatch.setenv("BATON_TEST_DIR", str(tmp_path))
    store = open_store(store_url)
    worker_agents.TAKEOVER.update(url=store_url, goal="fenced")
    data = plan(
        task("other", "takes_over", input={"text": "$goal.text"}),
        task("pay", "wait", input={"text": "$goal.text"}, side_effects="unsafe"),
        agents=[],
    )
    data["agents"] = {"takes_over": "tests.worker_agents:takes_over",
                      "wait": "tests.agents:waits_for_file"}
    try:
        with pytest.raises(FencedOut) as fenced:
            run(store, data, {"text": "x"}, goal_id="fenced")
        assert fenced.value.running == ["pay #1"]
        assert str(fenced.value).endswith(
            "; in flight here when it stopped, their outcome recorded by no one (the goal "
            "holds them as outcome unknown): pay #1")
    finally:
        (tmp_path / "release").write_text("")
        store.close()


def test_a_save_the_store_fails_names_the_unsafe_attempts_still_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from baton.store.eventstore import StoreError

    monkeypatch.setenv("BATON_TEST_DIR", str(tmp_path))
    store = open_store(f"sqlite:///{tmp_path}/b.db")
    _failing_saves_of_results(store, monkeypatch)
    data = plan(task("other", "upper", input={"text": "$goal.text"}),
                task("pay", "wait", input={"text": "$goal.text"}, side_effects="unsafe"),
                agents=[])
    data["agents"] = {"upper": "tests.agents:upper", "wait": "tests.agents:waits_for_file"}
    try:
        with pytest.raises(StoreError) as failed:
            run(store, data, {"text": "x"}, goal_id="g")
        assert str(failed.value) == (
            "store postgresql://db/baton: couldn't get a connection after 5.00 s; in flight "
            "here when it stopped, their outcome recorded by no one (the goal holds them as "
            "outcome unknown): pay #1")
    finally:
        (tmp_path / "release").write_text("")
        store.close()
