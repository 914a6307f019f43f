"""PostgreSQL saves run in parallel, and no reader of the log ever passes a gap.

Writers no longer take the events table's lock, so a transaction can hold notification id 10
uncommitted while id 11 is already committed. These tests hold such a transaction open on a
connection of their own (the same insert function every save uses) and check what the readers
see meanwhile and afterwards. Nothing is timed: a wait only runs out when the behaviour under
test is broken.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError

from baton.domain.decisions import TaskReady
from baton.domain.goal import Goal
from baton.store.eventstore import BatonStore, open_store
from baton.store.pg_recorder import INSERT_FUNCTION
from tests.conftest import PG_URL
from tests.support import load, plan, task

pytestmark = pytest.mark.postgres

WAIT_S = 10  # only reached when the behaviour under test is broken


def _goal() -> Goal:
    loaded = load(plan(task("a", "upper", input={"text": "x"})))
    goal = Goal.start(
        goal_id=uuid.uuid4().hex, plan=loaded.plan, goal_input={}, concurrency=1,
        at=datetime.now(UTC),
    )
    goal.record(TaskReady(task="a", inputs=[], rule="r", reason="r"))
    return goal


@pytest.fixture
def store(postgres_url: str) -> Iterator[BatonStore]:
    opened = open_store(postgres_url)
    try:
        yield opened
    finally:
        opened.close()


def _schema(store: BatonStore) -> str:
    return store.env["POSTGRES_SCHEMA"]


@contextmanager
def _open_insert(store: BatonStore, goal: Goal) -> Iterator[tuple[psycopg.Connection, list[int]]]:
    """`goal`'s events inserted through the save's own function, the transaction left open."""
    stored = [store.app.mapper.to_stored_event(e) for e in goal.collect_events()]
    with psycopg.connect(PG_URL) as conn:  # not autocommit: the transaction stays open
        rows = conn.execute(
            f'SELECT * FROM "{_schema(store)}".{INSERT_FUNCTION}(%b, %b, %b, %b)',
            ([e.originator_id for e in stored], [e.originator_version for e in stored],
             [e.topic for e in stored], [e.state for e in stored]),
        ).fetchall()
        yield conn, [row[0] for row in rows]


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # reported by the caller's assertion
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def _ids(store: BatonStore) -> list[int]:
    return [n.id for n in store.recorder.select_notifications(start=1, limit=1000)]


def _eventually(check: Callable[[], bool]) -> bool:
    """A reader lags by the oldest transaction running anywhere on the server (other tests'
    too): look again until it has ended."""
    done = threading.Event()
    for _ in range(WAIT_S * 20):
        if check():
            return True
        done.wait(0.05)
    return False


def test_the_store_uses_the_ordered_recorder(store: BatonStore) -> None:
    assert type(store.recorder).__name__ == "OrderedInsertPostgresRecorder"


def test_a_save_does_not_wait_for_another_writers_commit(store: BatonStore) -> None:
    first, second = _goal(), _goal()
    with _open_insert(store, first):
        saver, errors = _in_thread(lambda: store.save(second))
        saver.join(WAIT_S)
        assert not saver.is_alive(), "the save waited for the other transaction to commit"
        assert not errors, errors
    assert [type(e).__name__ for e in store.events(second.id)] == ["Started", "TaskReady"]


def test_no_reader_passes_a_gap_that_can_still_fill(store: BatonStore) -> None:
    early, late = _goal(), _goal()
    with _open_insert(store, early) as (conn, held):
        store.save(late)  # committed, with notification ids after the held ones
        late_ids = [n for n in range(max(held) + 1, max(held) + 3)]
        assert store.recorder.select_events(late.id)  # stored and readable by goal
        visible = _ids(store)
        assert not set(visible) & set(late_ids), "a reader passed an uncommitted gap"
        assert (store.recorder.max_notification_id() or 0) < min(held)
        conn.commit()
    assert _eventually(lambda: _ids(store) == [*held, *late_ids])
    originators = [n.originator_id for n in store.recorder.select_notifications(1, 10)]
    assert originators == [early.id, early.id, late.id, late.id]
    assert store.recorder.max_notification_id() == max(late_ids)


def test_a_reader_does_not_wait_for_transactions_that_write_no_events(
    store: BatonStore,
) -> None:
    """A command reads its own events back (its read models are current) even while another
    transaction on the server, older than its save, is still open."""
    goal = _goal()
    with psycopg.connect(PG_URL) as other:
        other.execute(f'CREATE TABLE "{_schema(store)}".elsewhere (x int)')
        other.execute(f'INSERT INTO "{_schema(store)}".elsewhere VALUES (1)')  # holds an xid
        store.save(goal)
        assert [n.originator_id for n in store.recorder.select_notifications(1, 10)] == [
            goal.id, goal.id]
        assert store.recorder.max_notification_id() == 2
        other.rollback()


def test_a_rolled_back_insert_leaves_a_gap_readers_pass(store: BatonStore) -> None:
    lost, kept = _goal(), _goal()
    with _open_insert(store, lost) as (conn, held):
        store.save(kept)
        conn.rollback()
    assert _eventually(lambda: _ids(store) == [max(held) + 1, max(held) + 2])


def test_a_failed_insert_leaves_the_ordering_lock_free(store: BatonStore) -> None:
    goal = _goal()
    store.save(goal)
    first, clash = store.get(goal.id), store.get(goal.id)  # two writers of one version
    for copy in (first, clash):
        copy.observe("ClockTicked", at=datetime.now(UTC))
    store.save(first)
    with pytest.raises(IntegrityError):
        store.save(clash)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        held = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND classid::int = hashtext('baton-insert')"
            "AND objid::int = hashtext(%s)", (f"{_schema(store)}.baton_events",),
        ).fetchone()
    assert held == (0,)
    other = _goal()
    saver, errors = _in_thread(lambda: store.save(other))
    saver.join(WAIT_S)
    assert not saver.is_alive() and not errors, errors


def test_a_transaction_that_wrote_before_takes_the_table_lock(store: BatonStore) -> None:
    """Its transaction id is older than the notification ids it takes: ordering it needs the
    lock eventsourcing always takes."""
    goal = _goal()
    stored = [store.app.mapper.to_stored_event(e) for e in goal.collect_events()]
    schema = _schema(store)
    with psycopg.connect(PG_URL) as conn:
        conn.execute(f'CREATE TABLE "{schema}".scratch (x int)')
        conn.execute(f'INSERT INTO "{schema}".scratch VALUES (1)')
        conn.execute(
            f'SELECT * FROM "{schema}".{INSERT_FUNCTION}(%b, %b, %b, %b)',
            ([e.originator_id for e in stored], [e.originator_version for e in stored],
             [e.topic for e in stored], [e.state for e in stored]),
        )
        modes = conn.execute(
            "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND relation = %s::regclass",
            (f'"{schema}".baton_events',),
        ).fetchall()
        assert ("ExclusiveLock",) in modes
        conn.commit()
    assert [type(e).__name__ for e in store.events(goal.id)] == ["Started", "TaskReady"]


def test_a_store_from_the_previous_release_is_migrated_in_place(postgres_url: str) -> None:
    """A table without `transaction_id` (and an older schema digest): opening adds the column,
    its old rows stay readable in order, and new saves go on after them."""
    old, new = _goal(), _goal()
    store = open_store(postgres_url)
    schema = _schema(store)
    store.save(old)
    store.close()
    with psycopg.connect(PG_URL, autocommit=True) as conn:  # as the previous release left it
        conn.execute(f'ALTER TABLE "{schema}".baton_events DROP COLUMN transaction_id')
        conn.execute(f'COMMENT ON TABLE "{schema}".baton_events IS \'baton-ddl:previous\'')
    store = open_store(postgres_url)
    try:
        assert [type(e).__name__ for e in store.events(old.id)] == ["Started", "TaskReady"]
        store.save(new)
        assert _eventually(lambda: _ids(store) == [1, 2, 3, 4])
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            rows = conn.execute(
                f'SELECT transaction_id IS NULL FROM "{schema}".baton_events '
                "ORDER BY notification_id").fetchall()
        assert rows == [(True,), (True,), (False,), (False,)]
    finally:
        store.close()


def test_a_store_with_the_previous_final_position_function_gets_the_new_one(
    store: BatonStore,
) -> None:
    """Release 0.2.0's function took no argument; left beside the new one, every read of the
    log would fail as ambiguous."""
    schema = _schema(store)
    with psycopg.connect(PG_URL, autocommit=True) as conn:  # as release 0.2.0 left it
        conn.execute(f'DROP FUNCTION "{schema}".es_final_notification_id(bigint)')
        conn.execute(f'CREATE FUNCTION "{schema}".es_final_notification_id() RETURNS bigint '
                     "LANGUAGE sql AS 'SELECT NULL::bigint'")
        conn.execute(f'COMMENT ON TABLE "{schema}".baton_events IS \'baton-ddl:previous\'')
    goal = _goal()
    reopened = open_store(store.url)
    try:
        reopened.save(goal)
        assert _eventually(lambda: len(_ids(reopened)) == 2)
        assert reopened.recorder.max_notification_id() == 2
    finally:
        reopened.close()


def test_a_save_notifies_listeners_once_committed(store: BatonStore) -> None:
    """Workers and `projections follow` wake on the channel; the notification is sent in a
    transaction of its own after the events committed, so what it announces is readable."""
    goal = _goal()
    with psycopg.connect(PG_URL, autocommit=True) as listener:
        listener.execute(f'LISTEN "{store.recorder.channel_name}"')
        store.save(goal)
        heard = list(listener.notifies(timeout=WAIT_S, stop_after=1))
    assert [n.channel for n in heard] == [store.recorder.channel_name]
    assert _eventually(lambda: [n.originator_id for n in store.recorder.select_notifications(
        1, 10)] == [goal.id, goal.id])


def test_a_store_closed_right_after_a_save_has_announced_it(postgres_url: str) -> None:
    """The NOTIFY goes out from a thread beside the saves; closing the store waits for it."""
    store = open_store(postgres_url)
    with psycopg.connect(PG_URL, autocommit=True) as listener:
        listener.execute(f'LISTEN "{store.recorder.channel_name}"')
        store.save(_goal())
        store.close()
        heard = list(listener.notifies(timeout=WAIT_S, stop_after=1))
    assert [n.channel for n in heard] == [store.recorder.channel_name]


def test_saves_within_the_interval_share_one_notification(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every NOTIFY wakes every worker and follower of the store, so a process announces its
    saves at most once per interval, and never leaves the last of them unannounced. The
    interval is held open here until the saves are done (its wait is the notifier's sleep)."""
    from baton.store import pg_recorder

    interval_over = threading.Event()
    monkeypatch.setattr(pg_recorder.time, "sleep", lambda _s: interval_over.wait(WAIT_S))
    with psycopg.connect(PG_URL, autocommit=True) as listener:
        listener.execute(f'LISTEN "{store.recorder.channel_name}"')
        goals = [_goal() for _ in range(10)]
        store.save(goals[0])
        first = list(listener.notifies(timeout=WAIT_S, stop_after=1))  # the interval begins
        for goal in goals[1:]:
            store.save(goal)
        assert list(listener.notifies(timeout=0.3, stop_after=1)) == []  # the interval holds
        interval_over.set()
        last = list(listener.notifies(timeout=WAIT_S, stop_after=1))
    assert len(first) == len(last) == 1
    assert _eventually(lambda: {n.originator_id for n in store.recorder.select_notifications(
        1, 100)} == {goal.id for goal in goals})


@pytest.mark.postgres
def test_stores_in_two_schemas_of_one_database_do_not_wake_each_other(
    postgres_url: str,
) -> None:
    """NOTIFY channels are database-wide; each schema's event table has its own."""
    other_schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{other_schema}"')
    other_url = postgres_url.rsplit("schema=", 1)[0] + f"schema={other_schema}"
    mine, other = open_store(postgres_url), open_store(other_url)
    try:
        assert mine.recorder.channel_name != other.recorder.channel_name
        with psycopg.connect(PG_URL, autocommit=True) as listener:
            listener.execute(f'LISTEN "{mine.recorder.channel_name}"')
            other.save(_goal())
            other.close()  # its NOTIFY has gone out
            assert list(listener.notifies(timeout=1.0, stop_after=1)) == []
            mine.save(_goal())
            mine.close()
            heard = list(listener.notifies(timeout=WAIT_S, stop_after=1))
        assert [n.channel for n in heard] == [mine.recorder.channel_name]
    finally:
        mine.close()
        other.close()
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{other_schema}" CASCADE')


def test_a_channel_name_stays_within_postgresqls_63_bytes() -> None:
    from baton.store.pg_recorder import channel_for

    assert channel_for("public", "baton_events") == "public_baton_events"
    long = channel_for("s" * 60, "baton_events")
    assert len(long) <= 63 and long != channel_for("s" * 61, "baton_events")


def _bulk_rows(store: BatonStore, conn: psycopg.Connection, rows: int) -> str:
    """`rows` committed events of one transaction, straight into the table; the table's name."""
    table = f'"{_schema(store)}".{store.recorder.events_table_name}'
    conn.execute(
        f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
        f"SELECT gen_random_uuid(), 1, 'bulk', '\\x00'::bytea FROM generate_series(1, %s)",
        (rows,),
    )
    conn.execute(f"ANALYZE {table}")
    return table


def _reads_of_the_log(conn: psycopg.Connection, table: str, work: Callable[[], Any]) -> Any:
    """(sequential scans, rows read) of `table` while `work` runs in `conn`'s transaction:
    PostgreSQL's own per-transaction counters, so nothing here is timed."""
    with conn.transaction():
        work()
        return conn.execute(
            "SELECT seq_scan, seq_tup_read + idx_tup_fetch FROM pg_stat_xact_user_tables "
            "WHERE relid = %s::regclass", (table,),
        ).fetchone()


def test_reading_the_log_never_scans_the_whole_table(store: BatonStore) -> None:
    """A long-lived reader (a worker, `projections follow`) calls the read functions again and
    again on one connection, where PL/pgSQL soon plans their statements generically: each must
    still be an index lookup, not a scan of every event ever stored."""
    schema = _schema(store)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        table = _bulk_rows(store, conn, 20_000)

        def read() -> None:
            conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            for _ in range(3):
                conn.execute(f'SELECT "{schema}".es_final_notification_id()').fetchone()
                conn.execute(f'SELECT * FROM "{schema}".es_select_final_notifications('
                             "20000, NULL, NULL, 10)").fetchall()

        seq_scans, _ = _reads_of_the_log(conn, table, read)
    assert seq_scans == 0


def test_a_caught_up_reader_reads_only_what_is_new_behind_a_long_transaction(
    store: BatonStore,
) -> None:
    """A transaction left open anywhere on the server holds back the cheap first look at the
    final position; a reader near the head must still look only at the rows after it."""
    schema = _schema(store)
    with psycopg.connect(PG_URL) as other, psycopg.connect(PG_URL, autocommit=True) as conn:
        other.execute(f'CREATE TABLE "{schema}".elsewhere (x int)')
        other.execute(f'INSERT INTO "{schema}".elsewhere VALUES (1)')  # holds an xid, open
        table = _bulk_rows(store, conn, 20_000)

        def read() -> None:
            found = conn.execute(f'SELECT notification_id FROM "{schema}".'
                                 "es_select_final_notifications(19997, NULL, NULL, 10)")
            assert [row[0] for row in found.fetchall()] == [19998, 19999, 20000]

        _, fetched = _reads_of_the_log(conn, table, read)
        _, for_the_head = _reads_of_the_log(conn, table, lambda: conn.execute(
            f'SELECT "{schema}".es_final_notification_id()').fetchone())
        other.rollback()
    assert fetched < 100, f"{fetched} rows read for 3 new ones"
    # The head (`projections status`, the web view's poll) has no floor: its cheap first look
    # stops after the newest thousand rows, not after the 20,000 since the transaction began.
    assert for_the_head < 1_100
