"""eventsourcing's SQLite application recorder, inserting a save's rows in one statement.

The library's recorder runs `BEGIN`, one `INSERT` per event and `COMMIT` (three statements and
a commit for a chain task's four events, each through its cursor and transaction wrappers).
Here a save of up to `MAX_ROWS` events is one multi-row `INSERT ... VALUES (...), (...)` on the
pool's autocommit connection: one statement is one transaction in SQLite, all rows or none,
committed (and synced, `synchronous` unchanged) when it returns. The rows, the table and what a
conflict raises (`IntegrityError`, the runner's cue to re-read) are the library's; a larger save
takes the library's own path.

Notification ids: the table is a rowid table without AUTOINCREMENT, so each row inserted gets
the largest rowid plus one; the statement holds the write lock, so a save's rows get
consecutive ids ending at `lastrowid` (the library reads `lastrowid` after each row). The one
exception is a table whose largest rowid is 2**63-1 (SQLite then picks unused ids at random):
once the ids this recorder was given come near it, every save goes the library's way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder

__all__ = ["MAX_ROWS", "OneStatementSQLiteRecorder"]

# Four parameters a row: far below SQLite's 32,766 variables (999 before 3.32).
MAX_ROWS = 200
_MAX_ROWID = 2**63 - 1

# sqlite3's errors as the library's, in the order its transaction wrapper tests them.
_TRANSLATED: tuple[tuple[type[sqlite3.Error], type[PersistenceError]], ...] = (
    (sqlite3.InterfaceError, InterfaceError),
    (sqlite3.DataError, DataError),
    (sqlite3.OperationalError, OperationalError),
    (sqlite3.IntegrityError, IntegrityError),
    (sqlite3.InternalError, InternalError),
    (sqlite3.ProgrammingError, ProgrammingError),
    (sqlite3.NotSupportedError, NotSupportedError),
    (sqlite3.DatabaseError, DatabaseError),
)


class OneStatementSQLiteRecorder(SQLiteApplicationRecorder):
    """`SQLiteApplicationRecorder` whose `insert_events` writes a save in one statement."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._statements: dict[int, str] = {}

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        count = len(stored_events)
        if not 0 < count <= MAX_ROWS or kwargs or self._near_max_rowid():
            return super().insert_events(stored_events, **kwargs)
        statement = self._statements.get(count)
        if statement is None:
            rows = ",".join(["(?,?,?,?)"] * count)
            statement = self._statements[count] = (
                f"INSERT INTO {self.events_table_name} VALUES {rows}"
            )
        params: list[Any] = []
        for event in stored_events:
            originator_id = event.originator_id
            if not isinstance(originator_id, str):  # a UUID, as the library writes it
                originator_id = originator_id.hex
            params += (originator_id, event.originator_version, event.topic, event.state)
        with self.datastore.get_connection(commit=True) as conn, conn.cursor() as cursor:
            try:
                cursor.execute(statement, params)
            except sqlite3.Error as exc:
                raise _translated(exc) from exc
            last = cursor.lastrowid
        assert last is not None  # an INSERT that returned has a last rowid
        self._last_rowid = last
        return list(range(last - count + 1, last + 1))

    _last_rowid = 0

    def _near_max_rowid(self) -> bool:
        """True once this table's rowids came within reach of 2**63-1 (never, in practice)."""
        return self._last_rowid > _MAX_ROWID - 2 * MAX_ROWS


def _translated(exc: sqlite3.Error) -> PersistenceError:
    for driver_error, library_error in _TRANSLATED:
        if isinstance(exc, driver_error):
            return library_error(exc)
    return PersistenceError(exc)
