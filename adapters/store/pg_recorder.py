"""The PostgreSQL application recorder: writers commit in parallel, readers never pass a gap.

`notification_id` comes from a sequence when a row is inserted but becomes visible when its
transaction commits, so two writers can commit ids out of order. A reader tailing the log (the
read models, a worker's follower) that moved past id 10 while it was still uncommitted would
never see it. eventsourcing prevents that by taking `LOCK TABLE … IN EXCLUSIVE MODE` in every
insert and holding it through `COMMIT`: one event transaction commits at a time for the whole
store, and concurrent commits cannot share a WAL flush.

Here the ordering moves from the writers' commits to the readers' snapshots:

- **Each row records its transaction** (`transaction_id xid8 DEFAULT pg_current_xact_id()`).
- **A transaction's id and its notification ids are taken together**, under a session-level
  advisory lock released before the insert returns (microseconds, not through the commit): so
  of two writers, the one with the older transaction id holds the lower notification ids. The
  transaction id alone would not do: it is assigned on a transaction's first write, and another
  writer could take its id, then its sequence numbers, in between.
- **Each writer holds the table's ROW EXCLUSIVE lock before its transaction id exists** (any
  INSERT takes it; here it is taken first, explicitly), so the writers still running can be
  told from other transactions: `pg_locks` lists them.
- **A reader reads up to the final position**: the highest notification id among rows whose
  transaction is older than every event writer still running (`es_final_notification_id`;
  first, cheaply, older than every transaction running, among the newest thousand rows: the
  running writers are looked up in `pg_locks` only when that holds rows back). A reader passes
  its position as a floor, so no step looks at rows it has read already. Every id below the
  final position is committed or never will be: a running writer's ids come after it. The
  position is computed in one statement and the rows read in the next, so the rows' snapshot is
  the later one. Rows from before this column existed (NULL) were committed before it was
  added.

A reader thus waits only for event writers older than a row, never for unrelated transactions
on the server, and a command that wrote reads its own events back at once (unless a save that
began before its own is still committing). A caller whose transaction already wrote before
inserting events (none in Baton) gets the table's EXCLUSIVE lock instead, as eventsourcing does:
its transaction id is older than the notification ids it then takes.

`NOTIFY` is sent after the commit, not inside the transaction: PostgreSQL serialises the commits
of notifying transactions on one lock held through the WAL flush, a second table lock. It is
sent by a thread beside the saves (`_Notifier`), so a save does not wait for it, and saves that
commit while one is being sent share the next; its transaction commits without waiting for a
flush (nothing in it needs to be durable). Listeners (workers, `projections follow`) also look
again on their own timers, so a notification lost with a dying process costs a wake-up's delay.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Notification
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresSubscription,
)
from psycopg.sql import SQL, Composed, Identifier, Literal

from baton.projections.pg_schema import CreatedOnce
from baton.store.eventstore import insert_surviving_drops

__all__ = ["FINAL_FUNCTION", "INSERT_FUNCTION", "OrderedInsertPostgresRecorder"]

INSERT_FUNCTION = "es_insert_events_ordered"

FINAL_FUNCTION = "es_final_notification_id"
SELECT_FUNCTION = "es_select_final_notifications"


def channel_for(schema: str, table: str) -> str:
    """The NOTIFY channel of one schema's event table; within PostgreSQL's 63-byte names."""
    name = f"{schema}_{table}"
    if len(name.encode()) <= 63:
        return name
    return "baton_" + hashlib.sha256(f"{schema}.{table}".encode()).hexdigest()[:32]


class OrderedInsertPostgresRecorder(CreatedOnce, PostgresApplicationRecorder):
    """eventsourcing's recorder without the table lock: see the module's docstring."""

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        # NOTIFY channels are database-wide: named by the table alone (the library's choice),
        # stores in two schemas of one database woke each other's workers and followers.
        self.channel_name = channel_for(self.datastore.schema or "public", events_table_name)
        schema = Identifier(self.datastore.schema)
        table = SQL("{}.{}").format(schema, Identifier(self.events_table_name))
        self.table = table
        # Existing stores (created by an earlier release) get the column in place: no rewrite,
        # old rows keep NULL; the default then fills it for every writer, old releases' too.
        self.sql_create_statements += [
            SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS transaction_id xid8").format(table),
            SQL("ALTER TABLE {} ALTER COLUMN transaction_id SET DEFAULT pg_current_xact_id()")
            .format(table),
            self._create_function(schema, table),
            *self._create_read_functions(schema, table),
        ]
        # The statements of every save and read, rendered once: psycopg renders a Composed
        # again on each execute (~25 µs) and caches the conversion of plain text only.
        self.sql_insert = SQL("SELECT * FROM {}.{}(%b, %b, %b, %b)").format(
            schema, Identifier(INSERT_FUNCTION)
        ).as_string(None)
        # Its own transaction, which commits without waiting for the WAL flush: a notification
        # needs no durability, and the notify lock is held until the commit returns.
        self.sql_notify = SQL(
            "SELECT set_config('synchronous_commit', 'off', true), pg_notify({}, '')"
        ).format(Literal(self.channel_name)).as_string(None)
        self.notifier = _Notifier(self)
        self.max_notification_id_statement = SQL("SELECT {}.{}() AS max").format(
            schema, Identifier(FINAL_FUNCTION))
        self.sql_select = SQL(
            "SELECT originator_id, originator_version, topic, state, notification_id "
            "FROM {}.{}(%s, %s, %s, %s)"
        ).format(schema, Identifier(SELECT_FUNCTION)).as_string(None)

    def _create_function(self, schema: Identifier, table: Composed) -> Composed:
        # Two int4 keys: apart from the goals' single-bigint ownership locks.
        key = SQL("hashtext('baton-insert'), hashtext({})").format(
            Literal(f"{self.datastore.schema}.{self.events_table_name}")
        )
        insert = SQL(
            "RETURN QUERY INSERT INTO {table} (originator_id, originator_version, topic, state)"
            " SELECT * FROM unnest(ids, versions, topics, states) RETURNING notification_id;"
        ).format(table=table)
        return SQL(
            "CREATE OR REPLACE FUNCTION {schema}.{function}("
            "ids {id_type}[], versions bigint[], topics text[], states bytea[]) "
            "RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$ "
            "BEGIN "
            # Already wrote in this transaction: its id is older than ids taken since.
            "IF pg_current_xact_id_if_assigned() IS NOT NULL THEN "
            "  LOCK TABLE {table} IN EXCLUSIVE MODE; {insert} RETURN; "
            "END IF; "
            # Before the transaction id: readers find the running writers by this lock.
            "LOCK TABLE {table} IN ROW EXCLUSIVE MODE; "
            "PERFORM pg_advisory_lock({key}); "
            "BEGIN "
            "  PERFORM pg_current_xact_id(); {insert} "
            "EXCEPTION WHEN OTHERS OR QUERY_CANCELED THEN "
            # A session lock outlives the transaction: never leave it held.
            "  PERFORM pg_advisory_unlock({key}); RAISE; "
            "END; "
            "PERFORM pg_advisory_unlock({key}); "
            "END; $BODY$"
        ).format(
            schema=schema,
            function=Identifier(INSERT_FUNCTION),
            id_type=Identifier(self.datastore.originator_id_type),
            table=table,
            insert=insert,
            key=key,
        )

    def _create_read_functions(self, schema: Identifier, table: Composed) -> list[Composed]:
        names = {
            "schema": schema,
            "table": table,
            "table_name": Literal(table.as_string()),
            "final": Identifier(FINAL_FUNCTION),
            "select": Identifier(SELECT_FUNCTION),
        }
        # Every statement below is an index lookup whatever its plan: a long-lived reader's
        # session plans them generically after five calls, and a plan made for an EXISTS that
        # expects rows at once (there usually are none) scanned the whole table each time.

        def last_before(bound: str) -> Composed:
            """The last row above `bound` of a transaction older than `horizon`."""
            return SQL(
                "(SELECT max(notification_id) FROM {table} WHERE notification_id > {bound} "
                "AND (transaction_id IS NULL OR transaction_id < horizon))"
            ).format(bound=SQL(bound), **names)

        final = SQL(
            # `floor`: the caller reads only above it (a reader's position), so no step looks
            # further back than that, however old the oldest transaction on the server is.
            "CREATE OR REPLACE FUNCTION {schema}.{final}(floor bigint DEFAULT -1) "
            "RETURNS bigint LANGUAGE plpgsql VOLATILE AS $BODY$ "
            "DECLARE horizon xid8; newest bigint; final bigint; "
            "BEGIN "
            "newest := (SELECT max(notification_id) FROM {table}); "
            "IF newest IS NULL OR newest <= floor THEN RETURN newest; END IF; "
            # Cheap first: transactions older than the oldest one running have all ended. Only
            # among the newest thousand rows: behind a transaction left open anywhere on the
            # server, every row since it began fails this test, and the next step decides.
            "horizon := pg_snapshot_xmin(pg_current_snapshot()); "
            "final := {last_recent}; "
            "IF final >= newest THEN RETURN final; END IF; "
            # Rows held back: by event writers, or by transactions that write no events? Only
            # the oldest event writer still running counts (else the next transaction id) ...
            "SELECT least(pg_snapshot_xmax(s.snap), ("
            "  SELECT min(x) FROM pg_snapshot_xip(s.snap) AS x WHERE xid(x) IN ("
            "    SELECT t.transactionid FROM pg_locks t JOIN pg_locks r"
            "    ON r.virtualtransaction = t.virtualtransaction"
            "    WHERE t.locktype = 'transactionid' AND r.locktype = 'relation'"
            "    AND r.relation = {table_name}::regclass"
            "    AND r.mode IN ('RowExclusiveLock', 'ExclusiveLock')))) "
            "INTO horizon FROM (SELECT pg_current_snapshot() AS snap) AS s; "
            # ... and, in a later snapshot, the last row of a transaction older than that.
            "RETURN {last_before}; "
            "END; $BODY$"
        ).format(
            last_recent=last_before("greatest(floor, newest - 1000)"),
            last_before=last_before("floor"),
            **names,
        )
        select = SQL(
            "CREATE OR REPLACE FUNCTION {schema}.{select}("
            "after bigint, upto bigint, topics text[], lim bigint) RETURNS SETOF {table} "
            "LANGUAGE plpgsql VOLATILE AS $BODY$ "
            "DECLARE final bigint := {schema}.{final}(after); "
            "BEGIN "
            # A statement after the one that found `final`: its snapshot sees every row below.
            "RETURN QUERY SELECT * FROM {table} e "
            "WHERE e.notification_id > after AND e.notification_id <= final "
            "AND (upto IS NULL OR e.notification_id <= upto) "
            "AND (topics IS NULL OR e.topic = ANY(topics)) "
            "ORDER BY e.notification_id LIMIT lim; "
            "END; $BODY$"
        ).format(**names)
        # Release 0.2.0's function took no floor: a second overload would make calls ambiguous.
        drop_old = SQL("DROP FUNCTION IF EXISTS {schema}.{final}()").format(**names)
        return [drop_old, final, select]

    @property
    def marker_table(self) -> str:
        return str(self.events_table_name)

    # --- writing ---

    def insert_events(
        self, stored_events: Sequence[Any], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events or kwargs.get("tracking") is not None:
            return super().insert_events(stored_events, **kwargs)  # type: ignore[no-any-return]
        return insert_surviving_drops(self, stored_events, self._insert)

    def _insert(self, stored_events: Sequence[Any]) -> Sequence[int]:
        """One function call (its own transaction: the pool's connections autocommit); the
        NOTIFY follows from the notifier's thread."""
        columns = (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        )
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.sql_insert, columns, prepare=True)
            ids = [row[INSERT_FUNCTION] for row in curs.fetchall()]
        self.notifier.poke()
        return ids

    def notify(self) -> None:
        with self.datastore.get_connection() as conn:
            conn.execute(self.sql_notify, prepare=True)

    # --- reading ---

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """The library's query, up to the final position (see the module's docstring)."""
        after = -1 if start is None else (start - 1 if inclusive_of_start else start)
        params = (after, stop, list(topics) if topics else None, limit)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.sql_select, params, prepare=True)
            return [
                Notification(
                    id=row["notification_id"],
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
                for row in curs.fetchall()
            ]

    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> Any:
        return _PatientSubscription(recorder=self, gt=gt, topics=topics)


class _Notifier:
    """NOTIFY after saves, from a thread of its own: one per burst of saves, and at most one
    every `INTERVAL_S`. Every NOTIFY wakes every listener of the store (each worker, each
    `projections follow`), and a listener reads whatever is new when it wakes, so one a save
    was as wasteful for them as for the sender: a goal's chain saves hundreds of times a second.
    The thread lingers a moment for the next save, then ends (a store left open keeps no
    thread)."""

    LINGER_S = 1.0
    INTERVAL_S = 0.01  # what a listener may wait, at most, beyond the save's own commit

    def __init__(self, recorder: OrderedInsertPostgresRecorder) -> None:
        self.recorder = recorder
        self.changed = threading.Condition()
        self.pending = False  # a save committed since the last NOTIFY was sent
        self.sending = False
        self.running = False  # the thread is alive (sending, or lingering for the next save)
        self.closed = False  # the store is closing: the thread ends instead of lingering

    def poke(self) -> None:
        with self.changed:
            self.pending = True
            if self.running:
                self.changed.notify_all()
                return
            self.running = True
        threading.Thread(target=self._run, name="baton-notify", daemon=True).start()

    def flush(self) -> None:
        """Wait until every save so far has been announced (a store about to close), then let
        the thread end now: a closed store leaves no thread behind, even for a moment."""
        with self.changed:
            self.changed.wait_for(lambda: not self.pending and not self.sending, timeout=5)
            self.closed = True
            self.changed.notify_all()

    def _run(self) -> None:
        while True:
            with self.changed:
                waited = self.changed.wait_for(lambda: self.pending or self.closed,
                                               timeout=self.LINGER_S)
                if not waited or not self.pending:
                    self.running = False
                    return
                self.pending, self.sending = False, True
            sent = time.monotonic()
            try:
                self.recorder.notify()
            except Exception:  # listeners look again on their own timers
                pass
            finally:
                with self.changed:
                    self.sending = False
                    self.changed.notify_all()
            # The saves of the next INTERVAL_S share one NOTIFY (the wait is this thread's; no
            # save waits for it).
            time.sleep(max(0.0, sent + self.INTERVAL_S - time.monotonic()))


class _PatientSubscription(PostgresSubscription):
    """eventsourcing's LISTEN/NOTIFY subscription that also looks again every 0.1 s: a row held
    back behind an older save becomes readable when that save ends, and a save that rolls back
    (a conflict) sends no NOTIFY to say so."""

    def _listen(self) -> None:
        try:
            with self._recorder.datastore.get_connection() as conn:
                conn.execute(SQL("LISTEN {0}").format(Identifier(self._recorder.channel_name)))
                while not self._has_been_stopped and not self._thread_error:
                    for _ in conn.notifies(timeout=0.1, stop_after=1):
                        pass
                    self._has_been_notified.set()
        except BaseException as e:
            if self._thread_error is None:
                self._thread_error = e
            self.stop()
