"""The materialised views: eventsourcing tracking recorders that also hold the read-model tables.

Exactly once, the library's way (its `examples/ftsprojection`): a batch's view rows and its
tracking record are written in one `datastore.transaction(commit=True)`. A projector killed at
any point either committed both or neither; restarted, it resumes after the last tracked event.
The PostgreSQL views are in `baton.projections.postgres`, imported only for a PostgreSQL store.

Two projectors never interleave: each batch first locks the views' meta row (SQLite: a write
that takes the database's write lock; PostgreSQL: `SELECT … FOR UPDATE`), then checks that the
tracked position is still the one its events follow, and otherwise gives the batch up.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.persistence import IntegrityError, Tracking, TrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder

from baton.domain.lifecycle import GOAL_OPEN
from baton.projections.fold import ProjectionError, Row, ViewFold, ViewsReset
from baton.projections.ranks import PERCENTILES, Sample, nearest_rank, steps_from_held
from baton.projections.schema import (
    AGENT_LATENCY,
    AGENT_STATS,
    GOAL_SUMMARY,
    MODEL_STATS,
    TABLES,
    TASK_STATUS,
    VIEWS_META,
    VIEWS_VERSION,
    Table,
)

__all__ = ["VIEWS_NAME", "BatchHook", "GoalViews", "SQLiteGoalViews"]

VIEWS_NAME = "baton_views"

# Called with ("before_commit" | "after_commit", last notification id of the batch): the
# fault-injection point of the crash tests.
BatchHook = Callable[[str, int], None]


class GoalViews(TrackingRecorder):
    """The read-model logic both dialects share; mixed into each dialect's tracking recorder."""

    dialect: ClassVar[str]
    datastore: Any

    # --- dialect specifics, overridden below ---

    def qualified(self, table: str) -> str:
        return table

    def tracking_table(self) -> str:
        raise NotImplementedError

    def sql(self, text: str) -> str:
        return text

    @contextmanager
    def alone(self) -> Iterator[bool]:
        """Whether no other process is bringing these views up to date, held until exit.

        For callers that may skip a catch-up (a worker keeping the views current): of N
        processes doing it every second, all but one read and decode each page only to find
        it written when their batch's position check fails. Exactly-once never depends on
        this: `apply_batch`'s check does. SQLite: always True (one machine's processes).
        """
        yield True

    def _lock_statement(self) -> str:
        raise NotImplementedError

    def _version(self, c: Any) -> int | None:
        """The rows' version (`VIEWS_VERSION` of the Baton that built them), None before any."""
        c.execute(self.sql(f"SELECT version FROM {self.qualified(VIEWS_META.name)} "
                           "WHERE name = ?"), (VIEWS_NAME,))
        found = c.fetchone()
        return None if found is None else int(_first(found))

    def _locked_version(self, c: Any) -> int | None:
        """Take the views' lock for the transaction; the rows' version under it."""
        c.execute(self._lock_statement(), (VIEWS_NAME,))
        return self._version(c)

    def _encode(self, kind: str, value: Any) -> Any:
        return value

    def _param(self, value: Any) -> Any:
        """A read's parameter, as `_encode` stores a text value (PostgreSQL: no NUL)."""
        return value

    def _decode(self, kind: str, value: Any) -> Any:
        return value

    if TYPE_CHECKING:  # provided by the library's tracking recorder each dialect mixes in

        def _max_tracking_id(self, application_name: str, c: Any) -> int | None: ...

        def _insert_tracking(self, c: Any, tracking: Tracking) -> None: ...

    # --- schema ---

    def views_ddl(self) -> list[str]:
        statements: list[str] = []
        for table in (*TABLES, VIEWS_META):
            statements += table.ddl(self.dialect, self.qualified(table.name))
        return statements

    def ensure_version(self, application_name: str, *, take_over: bool = False) -> None:
        """Rebuild from scratch when the rows were built by an earlier version of the views;
        a later version's are refused, unless `take_over` (`projections rebuild`, after a
        downgrade)."""
        meta = self.qualified(VIEWS_META.name)
        with self.datastore.transaction(commit=False) as c:  # the usual case: up to date
            version = self._version(c)
            if version == VIEWS_VERSION:
                return
            if not take_over:
                _not_newer(version)
        with self.datastore.transaction(commit=True) as c:
            self._lock_schema(c)  # first: other processes opening the store wait, then re-read
            version = self._version(c)
            if version == VIEWS_VERSION:
                return
            if not take_over:
                _not_newer(version)
            if version is None:
                c.execute(self.sql(f"INSERT INTO {meta} VALUES (?, ?)"),
                          (VIEWS_NAME, VIEWS_VERSION))
            else:
                c.execute(self.sql(f"UPDATE {meta} SET version = ? WHERE name = ?"),
                          (VIEWS_VERSION, VIEWS_NAME))
                for table in TABLES:  # columns may differ: drop and create them again
                    c.execute(f"DROP TABLE IF EXISTS {self.qualified(table.name)}")
                for table in TABLES:
                    for statement in table.ddl(self.dialect, self.qualified(table.name)):
                        c.execute(statement)
            self._clear(c, application_name)

    def _lock_schema(self, c: Any) -> None:
        """Serialise a change of the views' schema between processes (the first statement of
        its transaction)."""
        raise NotImplementedError

    def reset(self, application_name: str) -> None:
        """Empty every read model and forget the tracked position, in one transaction."""
        with self.datastore.transaction(commit=True) as c:
            c.execute(self._lock_statement(), (VIEWS_NAME,))
            self._clear(c, application_name)

    def _clear(self, c: Any, application_name: str) -> None:
        for table in TABLES:
            c.execute(f"DELETE FROM {self.qualified(table.name)}")
        c.execute(
            self.sql(f"DELETE FROM {self.tracking_table()} WHERE application_name = ?"),
            (application_name,),
        )

    # --- positions ---

    def position(self, application_name: str) -> int:
        with self.datastore.transaction(commit=False) as c:
            return self._max_tracking_id(application_name, c) or 0

    def open_goals(self, application_name: str) -> tuple[int, dict[str, int]]:
        """The tracked position, and each goal not ended as of it with its version: what a
        reader of the log from its first event knows once it reaches that position.

        The position is read first: rows read after it may already hold later events (on
        PostgreSQL each statement sees the latest commit), which a reader that goes on from
        the position reads again; read the other way round, a page committed in between would
        be missed.
        """
        with self.datastore.transaction(commit=False) as c:
            position = self._max_tracking_id(application_name, c) or 0
            marks = ", ".join("?" * len(GOAL_OPEN))
            c.execute(self.sql(f"SELECT goal_id, events FROM {self.qualified(GOAL_SUMMARY.name)}"
                               f" WHERE status IN ({marks})"), GOAL_OPEN)
            rows = [_values(found) for found in c.fetchall()]
        return position, {str(goal_id): int(events) for goal_id, events in rows}

    def lag(self, events_table: str, position: int, limit: int | None = None,
            head: int | None = None) -> int:
        """How many events of the log the views have not applied yet; counted no further than
        `limit` when given (a page or a command that only says how far behind, at a cost that
        does not grow with the lag), and only up to the event `head` when given (so that
        "at event P of H; lag L" never counts events written after H was read)."""
        after = f"FROM {events_table} WHERE {self._notification_column} > ?"
        bounds: tuple[int, ...] = (position,)
        if head is not None:
            after += f" AND {self._notification_column} <= ?"
            bounds += (head,)
        with self.datastore.transaction(commit=False) as c:
            if limit is None:
                c.execute(self.sql(f"SELECT COUNT(*) {after}"), bounds)
            else:
                c.execute(self.sql(f"SELECT COUNT(*) FROM (SELECT 1 {after} LIMIT ?) AS behind"),
                          (*bounds, limit))
            return int(_first(c.fetchone()))

    _notification_column: ClassVar[str] = "rowid"

    # --- a batch ---

    def apply_batch(
        self,
        application_name: str,
        batch: Sequence[tuple[Any, int]],
        *,
        after: int | None,
        hook: BatchHook | None = None,
        floor: int | None = None,
    ) -> bool:
        """Fold `batch` (events with their notification ids) into the views, exactly once.

        `after` is the position the batch's events follow, as read before they were selected;
        None (one event delivered by a subscription) means "if not applied already", and then
        a tracked position below `floor` raises `ViewsReset` (see `GoalProjection`). False,
        with nothing written, when the tracked position says the batch does not apply.
        """
        first, last = batch[0][1], batch[-1][1]
        with self.datastore.transaction(commit=True) as c:
            # Under the lock: another release may have rebuilt them since this process opened
            # them (a long-lived worker or server), and rows of this one's meaning must not
            # go into its tables.
            version = self._locked_version(c)
            if version != VIEWS_VERSION:
                raise ViewsChanged(version)
            current = self._max_tracking_id(application_name, c) or 0
            if current >= first if after is None else current != after:
                return False
            if after is None and floor is not None and current < floor:
                raise ViewsReset(f"the read models were reset to event {current} (a rebuild) "
                                 f"under a follower that had reached event {floor}")
            fold = self._load(c, {str(event.originator_id) for event, _ in batch})
            for event, position in batch:
                fold.apply(event, position)
            self._write(c, fold)
            self._insert_tracking(c, Tracking(application_name, last))
            if hook is not None:
                hook("before_commit", last)
        if hook is not None:
            hook("after_commit", last)
        return True

    def _load(self, c: Any, goal_ids: set[str]) -> ViewFold:
        ids = sorted(goal_ids)
        goals = {row["goal_id"]: row for row in self._select(c, GOAL_SUMMARY, "goal_id", ids)}
        tasks = {
            (row["goal_id"], row["task_id"]): row
            for row in self._select(c, TASK_STATUS, "goal_id", ids)
        }
        agents = {row["agent"]: row for row in self._select(c, AGENT_STATS, None, [])}
        models = {
            (row["agent"], row["model"]): row for row in self._select(c, MODEL_STATS, None, [])
        }
        return ViewFold(goals, tasks, agents, models)

    def _select(self, c: Any, table: Table, column: str | None, values: list[str]) -> list[Row]:
        names = ", ".join(table.names)
        base = f"SELECT {names} FROM {self.qualified(table.name)}"
        if column is None:
            c.execute(base)
            return [self._row(table, found) for found in c.fetchall()]
        rows: list[Row] = []
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            c.execute(self.sql(f"{base} WHERE {column} IN ({marks})"), chunk)
            rows += [self._row(table, found) for found in c.fetchall()]
        return rows

    def _row(self, table: Table, found: Any, names: tuple[str, ...] | None = None) -> Row:
        """One stored row decoded: every column of `table`, or the `names` selected."""
        return {
            name: self._decode(kind, value)
            for (name, kind), value in zip(_kinds(table.name, names or table.names),
                                           _values(found), strict=True)
        }

    def _write(self, c: Any, fold: ViewFold) -> None:
        self._upsert(c, GOAL_SUMMARY, (fold.goals[key] for key in sorted(fold.dirty_goals)))
        self._upsert(c, TASK_STATUS, (fold.tasks[key] for key in sorted(fold.dirty_tasks)))
        self._insert(c, AGENT_LATENCY, [self._encoded(AGENT_LATENCY, r) for r in fold.latencies])
        samples: dict[str, list[Sample]] = {}
        for row in fold.latencies:
            samples.setdefault(row["agent"], []).append((row["duration_ms"], row["position"]))
        for name in sorted(samples):
            self._percentiles(c, fold.agents[name], sorted(samples[name]))
        self._upsert(c, AGENT_STATS, (fold.agents[key] for key in sorted(fold.dirty_agents)))
        self._upsert(c, MODEL_STATS, (fold.models[key] for key in sorted(fold.dirty_models)))

    def _percentiles(self, c: Any, agent: Row, new: list[Sample]) -> None:
        """Exact nearest-rank p50 and p95 once the `new` samples (sorted, already inserted) are
        counted: each moves from the sample that held it by at most len(new) + 1 ranks."""
        before = agent["latency_samples"]
        agent["latency_samples"] = before + len(new)
        for prefix, percent in PERCENTILES:
            position = agent[f"{prefix}_position"]
            if before == 0 or position is None:  # every sample there is, is in this batch
                found = new[nearest_rank(len(new), percent) - 1]
            else:
                held = (agent[f"{prefix}_ms"], position)
                steps = steps_from_held(held, before, new, percent)
                found = held if steps == 0 else self._walk(c, agent["agent"], held, steps)
            agent[f"{prefix}_ms"], agent[f"{prefix}_position"] = found

    def _walk(self, c: Any, agent: str, held: Sample, steps: int) -> Sample:
        """The sample `steps` ranks from `held` among the agent's (negative: shorter ones).

        Two index seeks, each reading at most |steps| entries: the samples of `held`'s own
        duration beyond its position, then those of longer (shorter) durations. One row-value
        comparison would say the same, but SQLite seeks on its first column only and would
        then read every sample that ties with `held`.
        """
        compare, order = (">", "") if steps > 0 else ("<", " DESC")
        latency = self.qualified(AGENT_LATENCY.name)
        ties = (f"SELECT duration_ms, position FROM {latency} WHERE agent = ? AND "
                f"duration_ms = ? AND position {compare} ? ORDER BY position{order} LIMIT ?")
        beyond = (f"SELECT duration_ms, position FROM {latency} WHERE agent = ? AND "
                  f"duration_ms {compare} ? ORDER BY duration_ms{order}, position{order} LIMIT ?")
        reach = abs(steps)
        c.execute(
            self.sql(
                f"SELECT duration_ms, position FROM (SELECT * FROM ({ties}) AS t UNION ALL "
                f"SELECT * FROM ({beyond}) AS b) AS walk "
                f"ORDER BY duration_ms{order}, position{order} LIMIT 1 OFFSET ?"
            ),
            (agent, held[0], held[1], reach, agent, held[0], reach, reach - 1),
        )
        duration, position = _values(c.fetchone())
        return float(duration), int(position)

    def _upsert(self, c: Any, table: Table, rows: Iterable[Row]) -> None:
        updates = ", ".join(f"{n} = excluded.{n}" for n in table.names if n not in table.key)
        conflict = f"ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {updates}"
        self._insert(c, table, [self._encoded(table, row) for row in rows], conflict)

    def _insert(
        self, c: Any, table: Table, encoded: list[tuple[Any, ...]], conflict: str = ""
    ) -> None:
        """INSERT the rows: `executemany`, which psycopg pipelines (measured faster here than
        one multi-row VALUES statement, whose parameters it adapts one by one)."""
        if encoded:
            head = f"INSERT INTO {self.qualified(table.name)} ({', '.join(table.names)})"
            marks = f"({', '.join('?' * len(table.names))})"
            c.executemany(self.sql(f"{head} VALUES {marks} {conflict}"), encoded)

    def _encoded(self, table: Table, row: Row) -> tuple[Any, ...]:
        # Only time and JSON columns need converting; the rest go to the driver as they are.
        kinds = _conversions(table.name, self._converted)
        return tuple(
            row[name] if kind is None else self._encode(kind, row[name]) for name, kind in kinds
        )

    _converted: ClassVar[frozenset[str]] = frozenset({"time", "json"})

    # --- reading, for the CLI and for analysts ---

    def rows(self, table: Table, where: str = "", params: Sequence[Any] = (),
             order: str = "", *, columns: Sequence[str] | None = None,
             limit: int | None = None) -> list[Row]:
        """Rows of one read model; `where` / `order` are SQL fragments with `?` placeholders;
        `columns`: only these (default: all); `limit`: the first that many."""
        with self.reading() as read:
            return read.rows(table, where, params, order, columns=columns, limit=limit)

    @contextmanager
    def reading(self) -> Iterator[ViewReader]:
        """Reads in one transaction, one snapshot of the rows (on PostgreSQL, REPEATABLE READ:
        under its default, each statement saw the latest commit, so tables read one after the
        other while a projector wrote disagreed with each other)."""
        with self.datastore.transaction(commit=False) as c:
            self._snapshot(c)
            yield ViewReader(self, c)

    def _snapshot(self, c: Any) -> None:
        """Make the transaction just begun read one snapshot (SQLite's reads already do)."""

    def at_or_after(self, column: str, when: datetime) -> tuple[str, tuple[Any, ...]]:
        """A `where` fragment and its parameters: the time `column` is at or after `when` (an
        aware datetime). Both dialects compare instants as stored (PostgreSQL timestamptz;
        SQLite fixed-width UTC text, see `SQLiteGoalViews._encode`), so an index serves it."""
        if when.utcoffset() is None:
            raise ValueError(f"at_or_after: {when.isoformat()} has no time zone")
        return f"{column} >= ?", (self._encode("time", when),)


class ViewReader:
    """Reads of the read models inside one transaction (`GoalViews.reading`)."""

    def __init__(self, views: GoalViews, cursor: Any) -> None:
        self.views = views
        self.c = cursor

    def _query(self, table: Table, names: Sequence[str], where: str, order: str) -> str:
        query = f"SELECT {', '.join(names)} FROM {self.views.qualified(table.name)}"
        if where:
            query += f" WHERE {where}"
        return query + f" ORDER BY {order or ', '.join(table.key)}"

    def rows(self, table: Table, where: str = "", params: Sequence[Any] = (),
             order: str = "", *, columns: Sequence[str] | None = None,
             limit: int | None = None) -> list[Row]:
        names = tuple(columns or table.names)
        query = self._query(table, names, where, order)
        values = tuple(map(self.views._param, params))
        if limit is not None:
            query += " LIMIT ?"
            values += (limit,)
        self.c.execute(self.views.sql(query), values)
        return [self.views._row(table, found, names) for found in self.c.fetchall()]

    def count(self, table: Table, where: str = "", params: Sequence[Any] = ()) -> int:
        query = f"SELECT COUNT(*) FROM {self.views.qualified(table.name)}"
        self.c.execute(self.views.sql(f"{query} WHERE {where}" if where else query),
                       tuple(map(self.views._param, params)))
        return int(_first(self.c.fetchone()))

    def count_by(self, table: Table, column: str) -> dict[Any, int]:
        """Rows per value of `column` (an index on it makes this an index-only scan)."""
        self.c.execute(f"SELECT {column}, COUNT(*) FROM {self.views.qualified(table.name)} "
                       f"GROUP BY {column}")
        return {key: int(n) for key, n in map(_values, self.c.fetchall())}

    def distinct(self, table: Table, column: str) -> list[Any]:
        """The values of `column` but null, in order: a skip scan along an index led by it,
        one seek per value (SQLite and PostgreSQL alike), not a read of every row."""
        name = self.views.qualified(table.name)
        self.c.execute(
            f"WITH RECURSIVE v(x) AS (SELECT MIN({column}) FROM {name} UNION ALL "
            f"SELECT (SELECT MIN({column}) FROM {name} WHERE {column} > v.x) FROM v "
            f"WHERE v.x IS NOT NULL) SELECT x FROM v WHERE x IS NOT NULL"
        )
        return [_first(found) for found in self.c.fetchall()]


@cache
def _kinds(table: str, names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(column, kind) for the `names` of `table`, in that order."""
    kinds = {column.name: column.kind for column in _BY_NAME[table].columns}
    return tuple((name, kinds[name]) for name in names)


@cache  # keyed by name: hashing a whole Table per row would cost more than the conversion
def _conversions(table: str, converted: frozenset[str]) -> tuple[tuple[str, str | None], ...]:
    """(column, kind to convert or None) for each column of `table`."""
    return tuple(
        (c.name, c.kind if c.kind in converted else None) for c in _BY_NAME[table].columns
    )


_BY_NAME = {table.name: table for table in (*TABLES, VIEWS_META)}


def _values(row: Any) -> tuple[Any, ...]:
    """A fetched row's values in column order (psycopg gives dicts, sqlite3 sequences)."""
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)


def _first(row: Any) -> Any:
    return _values(row)[0]


class ViewsChanged(ProjectionError):
    """The read models were rebuilt by another release of Baton after this process opened
    them: nothing is written; opening them again rebuilds them as this release's, or refuses
    a newer release's."""

    def __init__(self, version: int | None) -> None:
        self.version = version
        super().__init__(
            f"the read models were rebuilt by another Baton since this process opened them "
            f"(read models version {version}; this Baton's is {VIEWS_VERSION})"
        )


def _not_newer(version: int | None) -> None:
    """Read models a newer Baton built are its own: dropped here, they were rebuilt from the
    whole log by each release in turn while two shared the store (a rolling deploy), and
    `status` was empty meanwhile."""
    if version is not None and version > VIEWS_VERSION:
        raise ProjectionError(
            f"the read models were built by a newer Baton (read models version {version}; "
            f"this Baton's is {VIEWS_VERSION}): left as they are; upgrade this Baton to read "
            "or update them (after a downgrade: `baton projections rebuild`)"
        )


class SQLiteGoalViews(GoalViews, SQLiteTrackingRecorder):
    """The views in the SQLite file beside `stored_events` (tracking in its `tracking` table)."""

    dialect = "sqlite"

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *self.views_ddl()]

    def tracking_table(self) -> str:
        return "tracking"

    def create_table(self) -> None:
        try:
            super().create_table()
        except IntegrityError:
            # eventsourcing reads whether the tracking table exists outside the transaction
            # that creates it, so a process opening a new store beside another one may insert
            # the same migration row; once the other committed, a second try finds it.
            super().create_table()

    def _lock_schema(self, c: Any) -> None:
        # A write as the first statement takes SQLite's write lock, waiting up to the timeout.
        c.execute(f"UPDATE {VIEWS_META.name} SET version = version WHERE name = ?", (VIEWS_NAME,))

    def _lock_statement(self) -> str:
        # A write as the transaction's first statement takes SQLite's write lock at once, so
        # the position read next cannot go stale before the commit.
        return f"UPDATE {VIEWS_META.name} SET version = version WHERE name = ?"

    def _encode(self, kind: str, value: Any) -> Any:
        if value is None:
            return None
        if kind == "time":  # in UTC, to the microsecond: text order is time order
            return value.astimezone(UTC).isoformat(timespec="microseconds")
        if kind == "json":
            return json.dumps(value, sort_keys=True)
        return value

    def _decode(self, kind: str, value: Any) -> Any:
        if value is None:
            return None
        if kind == "time":
            return datetime.fromisoformat(value)
        if kind == "json":
            return json.loads(value)
        return value
