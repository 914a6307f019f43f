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
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from baton.domain.errors import GoalOwned
from baton.runtime.loading import load_plan_file
from baton.runtime.service import submit_goal
from baton.store.eventstore import open_store
from baton.store.ownership import FencedOut, ownership_of, owning
from tests import worker_agents
from tests.cli_support import ROOT, baton
from tests.conftest import PG_URL
from tests.support import kinds, plan, run, task
from tests.test_chaos import lock_sessions, locks_held_by, wait_for


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
        # and what to do about it, which the README gives (`--wait`) and the line did not
        assert second.err.strip().endswith("; `baton resume g1 --wait` waits for it to let go")
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


def test_a_fenced_runner_says_what_its_unsafe_call_returned(store_url: str) -> None:
    """The runner that took over holds the unsafe attempt as outcome unknown; what the agent
    returned (a booking's confirmation) reached no event: the fenced runner's error says it,
    for the human who resolves the escalation."""
    store = open_store(store_url)
    worker_agents.TAKEOVER.update(url=store_url, goal="fenced-unsafe")
    data = plan(
        task("first", "takes_over", input={"text": "$goal.text"}, side_effects="unsafe"),
        task("second", "after_takeover", input={"text": "$first.text"}),
        agents=[],
    )
    data["agents"] = {name: f"tests.worker_agents:{name}"
                      for name in ("takes_over", "after_takeover")}
    try:
        with pytest.raises(FencedOut) as fenced:
            run(store, data, {"text": "BK-42"}, goal_id="fenced-unsafe")
        assert fenced.value.unrecorded == ['first #1 returned {"text": "BK-42"}']
        assert str(fenced.value).endswith(
            "; not recorded, so the goal holds these unsafe attempts as outcome unknown: "
            'first #1 returned {"text": "BK-42"}')
        assert "AgentReturned" not in kinds(store, "fenced-unsafe")
    finally:
        store.close()


# --- PostgreSQL: one lock session per process ---


@pytest.mark.postgres
def test_one_process_holds_many_goals_on_one_session(postgres_url: str) -> None:
    store = open_store(postgres_url)
    owners = ownership_of(store)
    before = lock_sessions(os.getpid())  # other tests' stores in this process, if any
    try:
        locks = [owners.try_acquire(f"many-{i}") for i in range(40)]
        assert all(lock is not None for lock in locks)
        assert (lock_sessions(os.getpid()) - before, locks_held_by(os.getpid())) == (1, 40)
        assert owners.held([f"many-{i}" for i in range(45)]) == {f"many-{i}" for i in range(40)}
        for lock in locks:
            assert lock is not None
            lock.release()
        assert (lock_sessions(os.getpid()) - before, locks_held_by(os.getpid())) == (1, 0)
    finally:
        store.close()
        owners.close()


@pytest.mark.postgres
def test_closing_the_store_releases_its_goals_and_closes_its_lock_session(
    postgres_url: str,
) -> None:
    store, other = open_store(postgres_url), open_store(postgres_url)
    before = lock_sessions(os.getpid())
    try:
        assert ownership_of(store).try_acquire("closed-1") is not None
        assert lock_sessions(os.getpid()) - before == 1
        store.close()  # not left to the garbage collector: the goal is free at once
        assert ownership_of(other).owner("closed-1") is None
        # The session's backend leaves pg_stat_activity a moment after the client closed it
        # (asynchronously, on the server: it was still listed once in CI under load).
        wait_for(lambda: lock_sessions(os.getpid()) == before, "the lock session to end",
                 timeout=10)
        assert ownership_of(other).try_acquire("closed-1") is not None
    finally:
        other.close()


@pytest.mark.postgres
def test_lock_sessions_connect_with_the_urls_libpq_parameters(postgres_url: str) -> None:
    url = postgres_url + "&options=-c%20statement_timeout%3D4321"
    store = open_store(url)
    try:
        owners: Any = ownership_of(store)
        assert owners.try_acquire("params-1") is not None
        [[timeout]] = owners.session.execute("SHOW statement_timeout").fetchall()
        assert timeout == "4321ms"
    finally:
        store.close()


@pytest.mark.postgres
def test_a_worker_driving_many_goals_uses_one_lock_session(
    postgres_url: str, tmp_path: Path
) -> None:
    loaded = load_plan_file(waiting_plan(tmp_path))
    store = open_store(postgres_url)
    try:  # what `baton submit` does, without a process per goal
        for i in range(12):
            submit_goal(store, loaded, {"text": f"w{i}"}, goal_id=f"w{i}")
    finally:
        store.close()
    env = {**os.environ, "BATON_STORE": postgres_url, "BATON_TEST_DIR": str(tmp_path)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "baton.cli", "worker", "--burst", "--concurrency", "12"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    calls = tmp_path / "calls.jsonl"
    try:
        deadline = time.monotonic() + 60
        while not calls.exists() or len(calls.read_text().splitlines()) < 12:
            assert worker.poll() is None and time.monotonic() < deadline, "agents never ran"
            time.sleep(0.05)
        # all twelve agents are waiting, so all twelve goals are owned: on one session
        assert (lock_sessions(worker.pid), locks_held_by(worker.pid)) == (1, 12)
    finally:
        (tmp_path / "release").write_text("")
        try:  # a burst: exits once the twelve are done (a stop would leave them in flight)
            _out, err = worker.communicate(timeout=60)
        finally:
            worker.kill()
    assert worker.returncode == 0, err
    assert err.count(": completed") == 12


def test_two_threads_of_one_process_cannot_own_one_goal(store_url: str) -> None:
    store = open_store(store_url)
    other = open_store(store_url)  # what another process would see
    try:
        held = threading.Event()
        done = threading.Event()

        def hold() -> None:
            with owning(store, "shared"):
                held.set()
                done.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(30)
        with pytest.raises(GoalOwned) as refused, owning(store, "shared"):
            pytest.fail("a second thread drove the goal")
        assert refused.value.pid == os.getpid()
        seen = ownership_of(other).owner("shared")
        assert seen is not None and seen.pid == os.getpid()
        assert ownership_of(store).owner("shared") == seen  # the same owner, inside and out
        done.set()
        holder.join(30)
        assert ownership_of(store).owner("shared") is None

        # many threads at once: exactly one wins, and its release leaves nothing held
        barrier = threading.Barrier(16)
        won: list[Any] = []

        def race() -> None:
            barrier.wait()
            lock = ownership_of(store).try_acquire("raced")
            if lock is not None:
                won.append(lock)

        racers = [threading.Thread(target=race) for _ in range(16)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(30)
        assert len(won) == 1
        won[0].release()
        assert ownership_of(other).owner("raced") is None
        assert ownership_of(other).try_acquire("raced") is not None  # free on the server too
    finally:
        for opened in (store, other):
            ownership_of(opened).close()
            opened.close()


def test_acquire_waits_for_a_thread_of_its_own_process(store_url: str) -> None:
    store = open_store(store_url)
    owners = ownership_of(store)
    try:
        first = owners.try_acquire("waited")
        assert first is not None
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(owners.acquire("waited")))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive() and not got  # still waiting for the first thread
        first.release()
        waiter.join(30)
        assert len(got) == 1
        got[0].release()
        assert owners.owner("waited") is None
    finally:
        owners.close()
        store.close()


@pytest.mark.postgres
def test_acquire_waits_for_another_process_without_blocking_the_shared_session(
    postgres_url: str,
) -> None:
    store = open_store(postgres_url)
    owners = ownership_of(store)
    key = owners.key("elsewhere")  # type: ignore[attr-defined]
    other = psycopg.connect(PG_URL, autocommit=True,
                            application_name="baton 4242@far-away 2026-01-01T00:00:00Z")
    before = lock_sessions(os.getpid())  # other tests' stores in this process, if any
    try:
        other.execute("SELECT pg_advisory_lock(%s)", (key,))
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(owners.acquire("elsewhere")))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive()
        began = time.monotonic()  # meanwhile the shared session serves this process's claims
        lock = owners.try_acquire("meanwhile")
        assert lock is not None and time.monotonic() - began < 2
        found = owners.owner("elsewhere")
        assert found is not None and (found.host, found.pid) == ("far-away", 4242)
        lock.release()
        other.execute("SELECT pg_advisory_unlock(%s)", (key,))
        waiter.join(30)
        assert len(got) == 1
        found = owners.owner("elsewhere")
        assert found is not None and found.pid == os.getpid()
        assert lock_sessions(os.getpid()) - before == 2  # the shared one, the one it waited on
        got[0].release()
        assert owners.owner("elsewhere") is None and lock_sessions(os.getpid()) - before == 1
    finally:
        other.close()
        store.close()
        owners.close()


@pytest.mark.postgres
def test_a_cut_shared_session_frees_its_goals_and_is_replaced(postgres_url: str) -> None:
    store = open_store(postgres_url)
    owners = ownership_of(store)
    other = psycopg.connect(PG_URL, autocommit=True)  # another process
    key = owners.key("cut")  # type: ignore[attr-defined]
    try:
        lock = owners.try_acquire("cut")
        assert lock is not None
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name LIKE %s", (f"baton {os.getpid()}@%",))
        # pg_terminate_backend only signals: the session ends, and its locks go, just after
        wait_for(lambda: lock_sessions(os.getpid()) == 0, "the cut session to end")
        # the server dropped the lock: another process takes the goal at once
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone() == (True,)
        # this process still drives it until its runner stops: no second thread here takes it
        assert owners.try_acquire("cut") is None
        assert owners.try_acquire("next") is not None  # new claims go to a new session
        # (every session of this process was cut: what is named for it now is that new one)
        assert (lock_sessions(os.getpid()), locks_held_by(os.getpid())) == (1, 1)
        lock.release()  # never unlocked on the new session: the other process keeps it
        assert other.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = pg_backend_pid()").fetchone() == (1,)
        assert locks_held_by(os.getpid()) == 1  # "next" only
    finally:
        other.close()
        store.close()
        owners.close()
