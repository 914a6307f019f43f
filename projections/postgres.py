"""The views on PostgreSQL: the store's schema, beside `baton_events`.

A module of its own, as in eventsourcing, so that only PostgreSQL users import psycopg.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.postgres import PostgresTrackingRecorder
from psycopg.sql import SQL
from psycopg.types.json import Jsonb

from baton.projections.pg_schema import CreatedOnce
from baton.projections.schema import VIEWS_META
from baton.projections.views import VIEWS_NAME, GoalViews, _first

__all__ = ["NUL_SHOWN", "PostgresGoalViews"]

# PostgreSQL's text and jsonb cannot hold NUL (0x00), which an agent's error or question, or a
# human's reason, may: the read models show this in its place (the events keep the NUL), so one
# such value cannot stop them catching up.
NUL_SHOWN = "\ufffd"


class PostgresGoalViews(CreatedOnce, GoalViews, PostgresTrackingRecorder):
    """The views in the store's schema beside `baton_events` (tracking: `baton_views_tracking`)."""

    dialect = "postgres"
    _notification_column = "notification_id"
    _converted = frozenset({"json", "text"})  # psycopg adapts datetimes itself

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.sql_create_statements += [SQL(statement).format() for statement in self.views_ddl()]

    @property
    def marker_table(self) -> str:
        return str(self.tracking_table_name)

    def _lock_schema(self, c: Any) -> None:
        c.execute("SELECT pg_advisory_xact_lock(hashtext('baton-ddl'), hashtext(%s))",
                  (f"{self.datastore.schema}.{VIEWS_META.name}",))

    def qualified(self, table: str) -> str:
        return f'"{self.datastore.schema}".{table}'

    def tracking_table(self) -> str:
        return self.qualified(self.tracking_table_name)

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    @contextmanager
    def alone(self) -> Iterator[bool]:
        # A session-level advisory lock on a connection held for the catch-up: it ends with the
        # session, so a projector that dies lets the next one in at once. Two 32-bit keys: a
        # key space apart from the goal locks' 64-bit ones.
        key = (f"{self.datastore.schema}.{self.tracking_table_name}",)
        with self.datastore.get_connection() as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(hashtext('baton-views'), "
                               "hashtext(%s)) AS got", key).fetchone()
            got = bool(row and row["got"])
            try:
                yield got
            finally:
                if got:
                    conn.execute("SELECT pg_advisory_unlock(hashtext('baton-views'), "
                                 "hashtext(%s))", key)

    def _snapshot(self, c: Any) -> None:
        c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def _lock_statement(self) -> str:
        return f"SELECT version FROM {self.qualified(VIEWS_META.name)} WHERE name = %s FOR UPDATE"

    def _locked_version(self, c: Any) -> int | None:
        # The lock statement reads the version itself: no second round trip per batch.
        c.execute(self._lock_statement(), (VIEWS_NAME,))
        found = c.fetchone()
        return None if found is None else int(_first(found))

    def _encode(self, kind: str, value: Any) -> Any:
        """PostgreSQL's text and jsonb cannot hold NUL (U+0000): an agent's output, an error or
        a reason with one stopped every catch-up for good at that event (the events hold it;
        SQLite's views too). Here it reads U+FFFD, the replacement character."""
        if kind == "json" and value is not None:
            return Jsonb(_without_nul(value))
        if kind == "text" and isinstance(value, str) and "\x00" in value:
            return value.replace("\x00", NUL_SHOWN)
        return value

    def _param(self, value: Any) -> Any:
        return _without_nul(value) if isinstance(value, str) else value


def _without_nul(value: Any) -> Any:
    """`value` (JSON) with NUL_SHOWN for each NUL in its strings and keys."""
    if isinstance(value, str):
        return value.replace("\x00", NUL_SHOWN) if "\x00" in value else value
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(v) for v in value]
    return value
