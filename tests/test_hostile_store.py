"""Store faults: a dropped PostgreSQL connection mid-run, a store that stays down, many processes
opening one store at once, a SQLite store locked by another writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

import baton
from baton.domain.replay import replay
from baton.store import eventstore
from baton.store.eventstore import StoreError, open_store
from tests import hostile_agents
from tests.cli_support import ROOT
from tests.conftest import PG_URL
from tests.inprocess import cli
from tests.replay_support import contracts_of
from tests.support import events_of, plan, run, task

H = "tests.hostile_agents"


def hostile_plan(*tasks: dict[str, Any]) -> dict[str, Any]:
    data = plan(*tasks)
    data["agents"] = {name: f"{H}:{name}" for name in data["agents"]}
    return data


@pytest.mark.postgres
def test_a_goal_survives_its_connections_being_killed_server_side(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGAPPNAME", f"baton-drop-{uuid.uuid4().hex[:8]}")  # ours only
    monkeypatch.setenv("BATON_TEST_PG", PG_URL)
    store = open_store(postgres_url)
    try:
        data = hostile_plan(  # every task kills every connection of the store, then returns
            task("a", "kills_store_connections", input={"text": "$goal.text"}),
            task("b", "kills_store_connections", input={"text": "$a.text"}),
            task("c", "kills_store_connections", input={"text": "$b.text"}),
        )
        goal = run(store, data, {"text": "x"})
        assert goal.state.status == "completed"
        assert goal.state.output is None or goal.state.tasks["c"].status == "succeeded"
        events = list(store.events(goal.id))
        # Each observation stored once: a retried save never repeats one that had committed.
        assert len(events_of(store, goal.id, "AgentReturned")) == 3
        assert replay(events, contracts_of(events)).divergence is None
    finally:
        store.close()


@pytest.mark.postgres
def test_a_save_whose_commit_was_lost_with_its_connection_is_not_repeated(
    postgres_url: str,
) -> None:
    store = open_store(postgres_url)
    try:
        goal = run(store, plan(task("a", "upper", input={"text": "$goal.text"})), {"text": "x"})
        before = len(store.events(goal.id))
        goal.observe("RunResumed", at=goal.state.now, concurrency=1)
        stored = [store.app.mapper.to_stored_event(e) for e in goal.collect_events()]
        recorder = store.recorder
        calls: list[int] = []

        def commits_then_drops(events: Any) -> Any:
            calls.append(1)
            if len(calls) == 1:
                recorder._insert(events)  # committed, but the answer never arrives
                raise OperationalError("server closed the connection unexpectedly")
            return recorder._insert(events)

        eventstore.insert_surviving_drops(recorder, stored, commits_then_drops)
        assert len(calls) == 2  # retried, found its own events stored, and stopped
        assert len(store.events(goal.id)) == before + 1
    finally:
        store.close()


def test_a_store_that_stays_down_ends_the_save_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []

    def always_down(events: Any) -> Any:
        calls.append(1)
        raise OperationalError("connection refused")

    monkeypatch.setattr(eventstore.time, "sleep", lambda seconds: None)
    with pytest.raises(StoreError) as info, eventstore.translated_errors("postgresql://h/db"):
        eventstore.insert_surviving_drops(None, ["event"], always_down)
    assert len(calls) == eventstore.RECONNECT_ATTEMPTS
    assert str(info.value) == "store postgresql://h/db: connection refused"


def test_eight_processes_open_one_new_store_at_once(store_url: str) -> None:
    # Eight workers started together on a store nobody has used yet (a read such as `status`
    # creates no SQLite file, so it is no longer the way in)
    env = {**os.environ, "BATON_STORE": store_url}
    procs = [
        subprocess.Popen([sys.executable, "-m", "baton.cli", "worker", "--burst"], cwd=ROOT,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    results = [(proc.wait(timeout=120), proc.stderr.read()) for proc in procs]  # type: ignore[union-attr]
    for proc in procs:
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert [code for code, _ in results] == [0] * 8, results
    assert all(err.rstrip().endswith("worker stopped: drove 0 goal(s)") for _, err in results)
    listed = cli("--store", store_url, "status", "--json")  # the store they made reads
    assert (listed.code, json.loads(listed.out)) == (0, {"goals": []})


def test_a_sqlite_store_locked_by_another_writer_fails_in_one_line_after_the_timeout(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "baton.db"
    monkeypatch.setenv("BATON_TEST_SQLITE", str(db))
    monkeypatch.setenv("BATON_SQLITE_LOCK_TIMEOUT", "1")
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(hostile_plan(
        task("a", "locks_sqlite", input={"text": "$goal.text"}))))
    try:
        result = cli("--store", f"sqlite:///{db}", "run", str(plan_file),
                     "--input", '{"text": "x"}')
    finally:
        for conn in hostile_agents.HELD:
            conn.close()
        hostile_agents.HELD.clear()
    assert result.code == 2
    assert "Traceback" not in result.err
    error = [line for line in result.err.splitlines() if line.startswith("baton: error")]
    assert error == [f"baton: error: store sqlite:///{db}: database is locked by another writer "
                     "(waited 1 s; BATON_SQLITE_LOCK_TIMEOUT sets how long)"]
    # Released, the goal resumes from what was stored before the lock.
    store = open_store(f"sqlite:///{db}")
    goal_id = store.recorder.select_notifications(1, 1)[0].originator_id
    store.close()
    resumed = cli("--store", f"sqlite:///{db}", "resume", goal_id)
    assert resumed.code in (0, 1), resumed.err


def _two_tasks_of(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, agent: str
) -> tuple[Any, str, Any]:
    """A SQLite store (its file, its URL) and a plan of two tasks of `agent`, one of the hostile
    agents that delete or replace the store's file (once)."""
    db = tmp_path / "baton.db"
    monkeypatch.setenv("BATON_TEST_SQLITE", str(db))
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(hostile_plan(
        task("a", agent, input={"text": "$goal.text"}),
        task("b", agent, input={"text": "$a.text"}))))
    return db, f"sqlite:///{db}", plan_file


def test_a_sqlite_file_deleted_mid_run_ends_the_run_in_one_line_and_creates_no_new_file(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, url, plan_file = _two_tasks_of(tmp_path, monkeypatch, "deletes_sqlite")
    result = cli("--store", url, "run", str(plan_file), "--input", '{"text": "x"}')
    # It went on into the unlinked file, ran b, and exited 0 "completed" with nothing kept.
    assert result.code == 2, result.out
    assert "Traceback" not in result.err
    error = [line for line in result.err.splitlines() if line.startswith("baton: error")]
    assert error == [f"baton: error: store sqlite:///{db}: the database file {str(db)!r} was "
                     "deleted or replaced while this process had it open; nothing more is written"]
    assert not db.exists()  # no new file holding read models of a goal without events


def test_a_sqlite_file_replaced_by_a_backup_mid_run_stops_the_run_and_resume_goes_on_from_it(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _db, url, plan_file = _two_tasks_of(tmp_path, monkeypatch, "replaces_sqlite")
    result = cli("--store", url, "run", str(plan_file), "--input", '{"text": "x"}',
                 "--goal-id", "g1")
    assert result.code == 2, result.out
    assert "was deleted or replaced while this process had it open" in result.err
    resumed = cli("--store", url, "resume", "g1", "--json")  # from what the backup holds
    assert resumed.code == 0, resumed.err
    assert json.loads(resumed.out)["status"] == "completed"
    assert cli("--store", url, "replay", "g1").code == 0


def test_a_worker_whose_sqlite_file_is_replaced_stops_and_the_next_goes_on(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No retry reaches a replaced file again: the worker retried forever (an ERROR per goal
    # every 60 s, driving nothing, looking alive). It stops, exit 2; the next one goes on.
    db, url, plan_file = _two_tasks_of(tmp_path, monkeypatch, "replaces_sqlite")
    assert cli("--store", url, "submit", str(plan_file), "--input", '{"text": "x"}',
               "--goal-id", "g1").code == 0
    stopped = cli("--store", url, "worker", "--burst")
    assert stopped.code == 2
    assert stopped.err.splitlines()[-1] == (
        f"baton: error: store {url}: the database file {str(db)!r} was deleted or replaced "
        "while this process had it open; nothing more is written")
    again = cli("--store", url, "worker", "--burst")
    assert again.code == 0, again.err
    assert cli("--store", url, "status", "g1", "--json").code == 0
    store = open_store(url)
    try:
        assert [type(e).__name__ for e in store.events("g1")][-1] == "GoalCompleted"
    finally:
        store.close()


def test_a_store_that_cannot_be_opened_leaves_no_connection_pool_threads_behind() -> None:
    before = set(threading.enumerate())
    with pytest.raises(StoreError, match="port 1 failed"):
        baton.Baton("postgresql://postgres@127.0.0.1:1/test?connect_timeout=1").__enter__()
    # The pool's workers lived on until a garbage collection, which, when it ran on one of
    # them, printed "Exception ignored in Application.__del__ ... cannot join current thread".
    assert [t.name for t in set(threading.enumerate()) - before if t.is_alive()] == []


def test_a_sqlite_store_path_that_cannot_be_opened_says_why(tmp_path: Any) -> None:
    (tmp_path / "baton.db").mkdir()  # a typo'd or mistaken path: SQLite says only "unable to…"
    result = cli("--store", f"sqlite:///{tmp_path}/baton.db", "status")
    assert result.code == 2
    assert result.err == (f"baton: error: store sqlite:///{tmp_path}/baton.db: unable to open "
                          f"database file ({str(tmp_path / 'baton.db')!r} is a directory)\n")


def test_a_postgres_error_is_one_line_without_baton_s_sql() -> None:
    # PostgreSQL's message goes on with the statement it failed on (`LINE 1: CREATE TABLE …`
    # and a caret, or a PL/pgSQL `CONTEXT:`): Baton's own SQL, no help to the user. It was
    # seen with a mistyped ?schema= (now created on first use) and a missing privilege.
    psycopg = pytest.importorskip("psycopg")
    from baton.store.eventstore import StoreError, translated_errors

    url = "postgresql://postgres@127.0.0.1:5432/test?schema=s"
    raised = psycopg.errors.InsufficientPrivilege(
        "permission denied for table baton_events\n"
        "CONTEXT:  SQL statement \"INSERT INTO s.baton_events …\"\n"
        "PL/pgSQL function s.baton_insert_events(text[]) line 3 at SQL statement\n"
        "HINT:  ask the schema's owner for INSERT")
    with pytest.raises(StoreError) as caught, translated_errors(url):
        raise raised
    assert str(caught.value) == (f"store {url}: permission denied for table baton_events "
                                 "HINT: ask the schema's owner for INSERT")
    with pytest.raises(StoreError) as caught, translated_errors(url):
        raise psycopg.errors.InvalidSchemaName(
            'schema "sx" does not exist\nLINE 1: CREATE TABLE IF NOT EXISTS "sx"."baton_events" '
            "(originat...\n                                   ^")
    assert str(caught.value) == f'store {url}: schema "sx" does not exist'
