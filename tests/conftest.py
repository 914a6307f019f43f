"""Shared fixtures: the same tests run on SQLite and on PostgreSQL.

PostgreSQL comes from $BATON_TEST_POSTGRES (default postgresql://postgres@127.0.0.1:5432/test).
Each test gets its own schema, dropped afterwards. When the server is unreachable the postgres
cases skip with the reason, except in CI (CI=true or BATON_REQUIRE_POSTGRES=1), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from functools import cache

import pytest

PG_URL = os.environ.get("BATON_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or bool(
        os.environ.get("BATON_REQUIRE_POSTGRES")
    )


@cache
def postgres_unreachable() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("select 1")
    except Exception as exc:
        return f"PostgreSQL at {PG_URL} is unreachable: {' '.join(str(exc).split())[:160]}"
    return None


def _pg_schema_url() -> Iterator[str]:
    import psycopg

    reason = postgres_unreachable()
    if reason is not None:
        if _postgres_required():
            pytest.fail(reason + " (required in CI)")
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'create schema "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}schema={schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'drop schema "{schema}" cascade')


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def store_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    """A fresh, empty store URL: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/baton.db"
    else:
        yield from _pg_schema_url()


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite:///{tmp_path}/baton.db"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _pg_schema_url()


@pytest.fixture
def store(store_url: str) -> Iterator[object]:
    from baton.store.eventstore import open_store

    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def bt(store_url: str) -> Iterator[object]:
    """A `baton.Baton` client on a fresh store, closed after the test."""
    import baton

    with baton.Baton(store_url) as client:
        yield client
