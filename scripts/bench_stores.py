"""Where the benchmarks write: a fresh SQLite file, or a PostgreSQL schema of their own.

Each target hands out a Baton store URL and opens plain driver connections with the same
settings Baton's store uses, so the raw floor and Baton pay the same durability price.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PG_DSN",
    "Target",
    "goal_footprint",
    "open_target",
    "postgres_unreachable",
    "snapshot_footprint",
    "sqlite_settings",
]

PG_DSN = os.environ.get("BATON_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class Target:
    """One store under test: Baton's URL for it, and how to reach it with the bare driver."""

    name: str  # "sqlite" | "postgres"
    url: str
    sqlite_path: str | None = None
    pg_schema: str | None = None

    def connect(self) -> Any:
        """A bare driver connection configured like Baton's own (autocommit, explicit txns)."""
        if self.sqlite_path is not None:
            conn: Any = sqlite3.connect(self.sqlite_path, isolation_level=None)
            # eventsourcing's SQLite datastore switches the file to WAL and leaves
            # `synchronous` at the library default; copy what it actually runs with.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={sqlite_settings(self.sqlite_path)['synchronous']}")
            return conn
        import psycopg

        conn = psycopg.connect(PG_DSN, autocommit=True)
        conn.execute(f'SET search_path TO "{self.pg_schema}"')
        return conn


def sqlite_settings(path: str) -> dict[str, Any]:
    """The journal mode and synchronous level a connection to `path` runs with by default."""
    conn = sqlite3.connect(path)
    try:
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
    finally:
        conn.close()
    return {"journal_mode": journal, "synchronous": int(synchronous)}


def postgres_unreachable() -> str | None:
    """None when PostgreSQL answers, else why not (the PostgreSQL runs are then skipped)."""
    try:
        import psycopg

        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("select 1")
    except Exception as exc:
        return f"PostgreSQL at {PG_DSN} is unreachable: {' '.join(str(exc).split())[:160]}"
    return None


@contextmanager
def open_target(name: str, workdir: Path) -> Iterator[Target]:
    """A fresh, empty target; a PostgreSQL schema is dropped again afterwards."""
    if name == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        yield Target(name, f"sqlite:///{path}", sqlite_path=str(path))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'create schema "{schema}"')
    sep = "&" if "?" in PG_DSN else "?"
    try:
        yield Target(name, f"{PG_DSN}{sep}schema={schema}", pg_schema=schema)
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'drop schema "{schema}" cascade')


def snapshot_footprint(store: Any, goal_id: str) -> int:
    """Bytes of stored `state` in the goal's snapshots (a cache beside its events)."""
    snapshots = store.app.snapshots
    if snapshots is None:
        return 0
    return sum(len(row.state) for row in snapshots.recorder.select_events(goal_id))


def goal_footprint(store: Any, goal_id: str) -> tuple[int, int]:
    """(rows, bytes of stored `state`) that a goal wrote to the event store."""
    rows = store.recorder.select_events(goal_id)
    return len(rows), sum(len(row.state) for row in rows)
