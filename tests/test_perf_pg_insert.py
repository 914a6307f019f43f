"""PostgreSQL saves go through one function call that still takes the table's EXCLUSIVE lock.

The lock is what keeps commit order equal to notification-id order (a projection tails the
ids). It is observed, not timed: while another session holds ROW EXCLUSIVE (which a plain
INSERT would not wait for, but EXCLUSIVE does), the save waits on a lock; once that session
commits, the save completes.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from baton.domain.decisions import TaskReady
from baton.domain.goal import Goal
from baton.store.eventstore import BatonStore, open_store
from tests.conftest import PG_URL
from tests.support import load, plan, task

pytestmark = pytest.mark.postgres

WAIT_S = 10  # only reached when the behaviour under test is broken


def _goal_with_events() -> Goal:
    loaded = load(plan(task("a", "upper", input={"text": "x"})))
    goal = Goal.start(
        goal_id=uuid.uuid4().hex, plan=loaded.plan, goal_input={}, concurrency=1,
        at=datetime.now(UTC),
    )
    goal.record(TaskReady(task="a", inputs=[], rule="r", reason="r"))
    return goal


def _waiting_on_a_lock(conn: psycopg.Connection, schema: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE %s",
        (f'%"{schema}"."es_insert_events_locked"%',),
    ).fetchone()
    return bool(row and row[0])


def test_the_store_uses_the_locking_recorder(postgres_url: str) -> None:
    store = open_store(postgres_url)
    try:
        assert type(store.recorder).__name__ == "LockedInsertPostgresRecorder"
    finally:
        store.close()


def test_a_save_takes_the_exclusive_table_lock(postgres_url: str) -> None:
    store: BatonStore = open_store(postgres_url)
    schema = store.env["POSTGRES_SCHEMA"]
    goal = _goal_with_events()
    errors: list[BaseException] = []

    def save() -> None:
        try:
            store.save(goal)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    try:
        with psycopg.connect(PG_URL, autocommit=True) as other, psycopg.connect(
            PG_URL, autocommit=True
        ) as watcher:
            with other.transaction():
                other.execute(f'LOCK TABLE "{schema}".baton_events IN ROW EXCLUSIVE MODE')
                saver = threading.Thread(target=save, daemon=True)
                saver.start()
                waited = threading.Event()
                for _ in range(WAIT_S * 50):
                    if _waiting_on_a_lock(watcher, schema):
                        waited.set()
                        break
                    saver.join(0.02)
                assert waited.is_set(), "the insert never waited for the table lock"
                assert saver.is_alive()
            saver.join(WAIT_S)
        assert not saver.is_alive() and not errors, errors
        assert [type(e).__name__ for e in store.events(goal.id)] == ["Started", "TaskReady"]
        notifications = store.recorder.select_notifications(start=1, limit=10)
        assert [n.originator_version for n in notifications] == [1, 2]
    finally:
        store.close()
