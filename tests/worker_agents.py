"""Agents for the ownership, worker and chaos tests.

The chaos agents append every real execution (agent, text, key, pid) to $BATON_TEST_DIR/calls.jsonl
before they return, so a test can count executions across processes, killed ones included.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

from tests.agents import Text

# The fencing test: where `takes_over` writes as if it were a second runner.
TAKEOVER: dict[str, str] = {}
CALLED: list[str] = []


def takes_over(inp: Text) -> Text:
    """While this attempt runs, another runner takes the goal up (records RunResumed)."""
    from baton.store.eventstore import open_store

    store = open_store(TAKEOVER["url"])
    try:
        goal = store.get(TAKEOVER["goal"])
        goal.observe("RunResumed", at=datetime.now(UTC), concurrency=1)
        store.save(goal)
    finally:
        store.close()
    CALLED.append("takes_over")
    return Text(text=inp.text)


def after_takeover(inp: Text) -> Text:
    CALLED.append("after_takeover")
    return Text(text=inp.text)


def _log(agent: str, text: str, key: str | None = None) -> None:
    line = json.dumps({"agent": agent, "text": text, "key": key, "pid": os.getpid()})
    with (Path(os.environ["BATON_TEST_DIR"]) / "calls.jsonl").open("a") as fh:
        fh.write(line + "\n")  # one write of one line: appends from processes do not interleave


async def _pause() -> None:
    await asyncio.sleep(float(os.environ.get("BATON_TEST_SLEEP", "0.02")))


async def chaos_none(inp: Text) -> Text:
    await _pause()
    _log("chaos_none", inp.text)
    return Text(text=inp.text + ".n")


async def chaos_idempotent(inp: Text, *, idempotency_key: str) -> Text:
    _log("chaos_idempotent", inp.text, idempotency_key)
    await _pause()
    return Text(text=inp.text + ".i")


async def chaos_unsafe(inp: Text, *, idempotency_key: str) -> Text:
    _log("chaos_unsafe", inp.text, idempotency_key)
    await _pause()
    return Text(text=inp.text + ".u")


# The worker's log-reading test: the agent holds its goal (and the worker's only slot) until
# the test lets it go.
GATE_ENTERED = threading.Event()
GATE_OPEN = threading.Event()


def gated(inp: Text) -> Text:
    GATE_ENTERED.set()
    GATE_OPEN.wait(10)  # only reached in full when the test is broken
    return Text(text=inp.text)


# The stop tests: the agent runs while its runner is asked to stop, without waking it (as a
# stopping `baton serve` asks: the runner hears of it with the next outcome).
STOP_ASKED = threading.Event()


def asks_to_stop(inp: Text) -> Text:
    CALLED.append("asks_to_stop")
    STOP_ASKED.set()
    return Text(text=inp.text)


def asks_to_stop_and_fails_once(inp: Text) -> Text:
    CALLED.append("asks_to_stop_and_fails_once")
    STOP_ASKED.set()
    if CALLED.count("asks_to_stop_and_fails_once") == 1:
        raise ConnectionError("first call fails")
    return Text(text=inp.text)


def counted(inp: Text) -> Text:
    CALLED.append("counted")
    return Text(text=inp.text + ".")
