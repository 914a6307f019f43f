"""Agents whose results are hostile: values that pass naive checks but cannot be stored or
printed, or whose reading raises. Plain typed functions, as users write them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tests.agents import Costly, Scored, Text

# What the agent `returns_value` returns; a test sets it before running the goal.
VALUE: list[Any] = [None]


class _ItemsRaise(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise RuntimeError("items() is broken")


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def lone_surrogate(inp: Text) -> Text:
    return {"text": "a\ud800b"}  # type: ignore[return-value]


def surrogate_key(inp: Text) -> Text:
    return {"text": "x", "\udcff": 1}  # type: ignore[return-value]


def nested_5000(inp: Text) -> Text:
    return {"text": _nested(5000)}  # type: ignore[return-value]


def items_raise(inp: Text) -> Text:
    return _ItemsRaise(text="x")  # type: ignore[return-value]


def huge_tokens(inp: Text) -> Text:
    return Text(text="x"), {"tokens": 10**400}  # type: ignore[return-value]


def nan_confidence(inp: Text) -> Scored:
    return {"text": "x", "confidence": float("nan")}  # type: ignore[return-value]


def nan_as_text(inp: Text) -> Scored:
    return {"text": "x", "confidence": "NaN"}  # type: ignore[return-value]


def infinite_cost(inp: Text) -> Costly:
    return {"text": "x", "usage": {"tokens": 1, "cost_usd": float("inf")}}  # type: ignore[return-value]


def infinite_cost_pair(inp: Text) -> Text:
    return Text(text="x"), {"tokens": 1, "cost_usd": float("inf")}  # type: ignore[return-value]


def raises_surrogate(inp: Text) -> Text:
    raise ValueError("bad \ud800 byte")


async def async_nested_5000(inp: Text) -> Text:
    return {"text": _nested(5000)}  # type: ignore[return-value]


def returns_value(inp: Text) -> Any:
    """Returns whatever VALUE holds (hypothesis tests draw it); annotated Scored below."""
    return VALUE[0]


returns_value.__annotations__ = {"inp": Text, "return": Scored}


# --- store faults: the agent itself takes the store away from the runner -------------------

HELD: list[Any] = []  # connections kept open by `locks_sqlite`, released by the test


def locks_sqlite(inp: Text) -> Text:
    """Holds the SQLite store's write lock (another writer's long transaction) and returns;
    only on its first call for a store (a marker file beside it)."""
    import os
    import sqlite3
    from pathlib import Path

    marker = Path(os.environ["BATON_TEST_SQLITE"] + ".locked-once")
    if marker.exists():
        return Text(text=inp.text)
    marker.write_text("")
    conn = sqlite3.connect(os.environ["BATON_TEST_SQLITE"], isolation_level=None,
                           check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    HELD.append(conn)
    return Text(text=inp.text)


def replaces_sqlite(inp: Text) -> Text:
    """Replaces the SQLite store's file with a copy of itself (a backup restored over it) and
    returns; only on its first call for a store (a marker file beside it)."""
    import os
    import sqlite3
    from pathlib import Path

    path = os.environ["BATON_TEST_SQLITE"]
    marker = Path(path + ".replaced-once")
    if marker.exists():
        return Text(text=inp.text)
    marker.write_text("")
    with sqlite3.connect(path) as source, sqlite3.connect(path + ".copy") as copy:
        source.backup(copy)
    source.close()
    copy.close()
    os.replace(path + ".copy", path)
    return Text(text=inp.text)


def deletes_sqlite(inp: Text) -> Text:
    """Deletes the SQLite store's file (and its WAL) and returns."""
    import os
    from pathlib import Path

    for suffix in ("", "-wal", "-shm"):
        Path(os.environ["BATON_TEST_SQLITE"] + suffix).unlink(missing_ok=True)
    return Text(text=inp.text)


def kills_store_connections(inp: Text) -> Text:
    """Terminates, server-side, every connection of this process's store (pg_terminate_backend
    on its application_name), as a failover or an administrator would; then returns."""
    import os

    import psycopg

    with psycopg.connect(os.environ["BATON_TEST_PG"], autocommit=True,
                         application_name="baton-test-killer") as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (os.environ["PGAPPNAME"],),
        ).fetchall()
    assert rows, "no connection of the store to kill"
    return Text(text=inp.text + "+")


class Loose(BaseModel):
    data: Any = None


def returns_loose(inp: Text) -> Loose:
    """Returns {"data": VALUE}: any JSON value is a valid output, so it is stored and printed."""
    return {"data": VALUE[0]}  # type: ignore[return-value]
