"""PostgreSQL schema objects created once per version, not on every open.

eventsourcing's recorders run their CREATE statements each time a store is opened. Run by
several processes at once, `CREATE OR REPLACE FUNCTION` fails with "tuple concurrently updated"
and two `CREATE TABLE IF NOT EXISTS` of one table with a duplicate `pg_type` key. Here the
statements run under a transaction-scoped advisory lock, and the main table's COMMENT records a
digest of them: an open that finds the digest current (the usual case) creates nothing and takes
no lock; a changed statement (a new release) changes the digest and runs them all again.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from psycopg.errors import DuplicateObject, DuplicateSchema, UniqueViolation
from psycopg.sql import SQL, Identifier, Literal

__all__ = ["CreatedOnce"]

_MARK = "baton-ddl:"


class CreatedOnce:
    """Mixin placed before an eventsourcing `PostgresRecorder`: `create_table` runs its
    `sql_create_statements` once per digest, under an advisory lock. Subclasses name the table
    whose comment carries the digest in `marker_table`."""

    datastore: Any
    sql_create_statements: list[Any]

    @property
    def marker_table(self) -> str:
        raise NotImplementedError

    def create_table(self) -> None:
        statements = [statement.as_string() for statement in self.sql_create_statements]
        mark = _MARK + hashlib.sha256("\n".join(statements).encode()).hexdigest()[:16]
        schema, table = self.datastore.schema, self.marker_table
        with self.datastore.get_connection() as conn:
            if _current_mark(conn, schema, table) != mark:
                with conn.transaction():
                    # Two int4 keys: a lock space apart from any single-bigint advisory lock.
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtext('baton-ddl'), hashtext(%s))",
                        (f"{schema}.{table}",),
                    )
                    if _current_mark(conn, schema, table) != mark:  # not made while we waited
                        _create_schema(conn, schema)
                        _create(conn, self.sql_create_statements)
                        conn.execute(SQL("COMMENT ON TABLE {}.{} IS {}").format(
                            Identifier(schema), Identifier(table), Literal(mark)))
        self.datastore.register_type_adapters()


def _current_mark(conn: Any, schema: str, table: str) -> str | None:
    qualified = SQL("{}.{}").format(Identifier(schema), Identifier(table)).as_string(conn)
    row = conn.execute(
        "SELECT obj_description(to_regclass(%s), 'pg_class') AS mark", (qualified,)
    ).fetchone()
    mark = row["mark"] if isinstance(row, dict) else (row[0] if row else None)
    return mark if isinstance(mark, str) else None


def _create_schema(conn: Any, schema: str) -> None:
    """The URL's `?schema=NAME` is created with the tables, on first use. Only when missing: a
    role that may use an existing schema need not be allowed to create one."""
    row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    if row is None:
        # Another table's creator (its own advisory lock) may create it at the same moment.
        with contextlib.suppress(DuplicateSchema, UniqueViolation), conn.transaction():
            conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(schema)))


def _create(conn: Any, statements: list[Any]) -> None:
    for statement in statements:
        if "CREATE TYPE" in statement.as_string():
            # No IF NOT EXISTS for types: a savepoint lets an existing one be skipped.
            with contextlib.suppress(DuplicateObject), conn.transaction():
                conn.execute(statement, prepare=False)
        else:
            conn.execute(statement, prepare=False)
