"""Deterministic agents for the tests: plain typed functions, as users write them.

Agents that must remember something across processes (crash tests) write to the directory
named by $BATON_TEST_DIR; the others keep in-process counters that tests reset.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, SecretStr

CALLS: Counter[str] = Counter()
KEYS: list[str] = []
BARRIER: threading.Barrier | None = None


class Text(BaseModel):
    text: str


class Number(BaseModel):
    value: int


class Scored(BaseModel):
    text: str
    confidence: float


class Pair(BaseModel):
    left: str
    right: str


class Items(BaseModel):
    items: list[str]


class Usage(BaseModel):
    tokens: int
    cost_usd: float


class Costly(BaseModel):
    text: str
    usage: Usage


class Nested(BaseModel):
    inner: Text
    tags: list[str]


class WithSecret(BaseModel):
    api_key: SecretStr
    text: str


def upper(inp: Text) -> Text:
    CALLS["upper"] += 1
    return Text(text=inp.text.upper())


def exclaim(inp: Text) -> Text:
    CALLS["exclaim"] += 1
    return Text(text=inp.text + "!")


def join(inp: Pair) -> Text:
    CALLS["join"] += 1
    return Text(text=f"{inp.left}+{inp.right}")


def count(inp: Text) -> Number:
    return Number(value=len(inp.text))


def gather(inp: Items) -> Text:
    return Text(text=",".join(inp.items))


def nest(inp: Text) -> Nested:
    return Nested(inner=Text(text=inp.text), tags=[inp.text, inp.text[::-1]])


def scored(inp: Text) -> Scored:
    """Confidence is encoded in the input: 'x@0.4' scores 0.4."""
    _, _, score = inp.text.partition("@")
    return Scored(text=inp.text, confidence=float(score or 1.0))


def costly(inp: Text) -> Costly:
    CALLS["costly"] += 1
    return Costly(text=inp.text, usage=Usage(tokens=100, cost_usd=0.01))


def always_fails(inp: Text) -> Text:
    CALLS["always_fails"] += 1
    raise RuntimeError(f"boom #{CALLS['always_fails']}")


def flaky(inp: Text) -> Text:
    """Fails on its first call for each text, succeeds on the second."""
    CALLS[f"flaky:{inp.text}"] += 1
    if CALLS[f"flaky:{inp.text}"] == 1:
        raise ConnectionError("upstream reset")
    return Text(text=inp.text + "~")


def raises_with_brackets(inp: Text) -> Text:
    """An error message that reads as rich markup (an unbalanced closing tag), and holds a
    terminal escape sequence (ESC [ 2 J clears the screen)."""
    raise RuntimeError(f"bad value [/] in [bold]{inp.text}[/bold] \x1b[2J")


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message for you")


def raises_unprintable(inp: Text) -> Text:
    raise _Unprintable()


def negative_usage(inp: Text) -> Text:
    """Reports a usage that would give budget back (as a returned pair)."""
    return Text(text=inp.text), {"tokens": -500, "cost_usd": -1.0}  # type: ignore[return-value]


def nonsense_usage(inp: Text) -> Costly:
    return {"text": inp.text, "usage": {"tokens": "lots"}}  # type: ignore[return-value]


def returns_none(inp: Text) -> Text:
    return None  # type: ignore[return-value]


def returns_wrong_type(inp: Text) -> Text:
    return Number(value=3)  # type: ignore[return-value]


def returns_unserialisable(inp: Text) -> Text:
    return {"text": object()}  # type: ignore[return-value]


def returns_huge(inp: Text) -> Text:
    return Text(text="x" * 2_000_000)


def returns_dict(inp: Text) -> Text:
    return {"text": inp.text}  # type: ignore[return-value]


def hangs(inp: Text) -> Text:
    CALLS["hangs"] += 1
    threading.Event().wait(30)  # far past any timeout the tests set
    return Text(text="too late")


async def async_upper(inp: Text) -> Text:
    await asyncio.sleep(0)
    return Text(text=inp.text.upper())


async def async_hangs(inp: Text) -> Text:
    await asyncio.Event().wait()
    return Text(text="never")


def meets(inp: Text) -> Text:
    """Returns only once another `meets` call is running at the same time (or raises)."""
    assert BARRIER is not None
    BARRIER.wait(timeout=10)  # a BrokenBarrierError means the calls never overlapped
    return Text(text=inp.text)


def book(inp: Text, *, idempotency_key: str) -> Text:
    CALLS["book"] += 1
    KEYS.append(idempotency_key)
    return Text(text=f"booked:{idempotency_key[:8]}")


def flaky_book(inp: Text, *, idempotency_key: str) -> Text:
    CALLS["flaky_book"] += 1
    KEYS.append(idempotency_key)
    if CALLS["flaky_book"] == 1:
        raise TimeoutError("payment gateway timed out")
    return Text(text=f"booked:{idempotency_key[:8]}")


def secret_echo(inp: WithSecret) -> WithSecret:
    return WithSecret(api_key=inp.api_key, text=inp.text.upper())


# --- agents for crash tests: they log every call to $BATON_TEST_DIR -------------------------


def _log(name: str, payload: dict[str, object]) -> None:
    directory = Path(os.environ["BATON_TEST_DIR"])
    with (directory / "calls.jsonl").open("a") as fh:
        fh.write(json.dumps({"agent": name, **payload}) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def logged_step(inp: Text) -> Text:
    _log("logged_step", {"text": inp.text})
    return Text(text=inp.text + ".")


def logged_flaky(inp: Text) -> Text:
    """Fails the first time it sees a text in this test directory, then succeeds."""
    marker = Path(os.environ["BATON_TEST_DIR"]) / f"flaky-{inp.text}"
    _log("logged_flaky", {"text": inp.text})
    if not marker.exists():
        marker.write_text("seen")
        raise ConnectionError("first call fails")
    return Text(text=inp.text + "~")


def logged_book(inp: Text, *, idempotency_key: str) -> Text:
    _log("logged_book", {"text": inp.text, "key": idempotency_key})
    return Text(text=f"booked:{idempotency_key[:8]}")


def dies_midcall(inp: Text, *, idempotency_key: str) -> Text:
    """Logs the call, then kills its own process: the outcome is never recorded."""
    _log("dies_midcall", {"text": inp.text, "key": idempotency_key})
    if os.environ.get("BATON_TEST_DIE") == "1":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(5)
    return Text(text=f"charged:{idempotency_key[:8]}")


def waits_for_file(inp: Text) -> Text:
    """Blocks until $BATON_TEST_DIR/release exists (at most 20 s), then returns."""
    release = Path(os.environ["BATON_TEST_DIR"]) / "release"
    _log("waits_for_file", {"text": inp.text})
    for _ in range(2000):
        if release.exists():
            break
        time.sleep(0.01)
    return Text(text=inp.text + " (late)")


# Set when the runner's timeout for `async_returns_when_told` has fired: it returns then.
TIME_RAN_OUT = threading.Event()


async def async_returns_when_told(inp: Text) -> Text:
    """Returns as its time runs out: once TIME_RAN_OUT is set (by the test, when the runner
    gives up on it), or after 10 s."""
    CALLS["async_returns_when_told"] += 1
    deadline = time.monotonic() + 10
    while not TIME_RAN_OUT.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    return Text(text=inp.text + " (just in time)")


async def async_ignores_cancel_once(inp: Text) -> Text:
    """The first call hangs and, cancelled as its time runs out, swallows the cancellation and
    returns anyway (an agent may); later calls return at once."""
    CALLS["async_ignores_cancel_once"] += 1
    if CALLS["async_ignores_cancel_once"] == 1:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return Text(text=inp.text + " (too late)")
    return Text(text=inp.text + " (in time)")


_ASYNC_BARRIER: asyncio.Barrier | None = None


async def async_meets(inp: Text) -> Text:
    """Returns only once the other `async_meets` call is awaiting at the same time."""
    global _ASYNC_BARRIER
    if _ASYNC_BARRIER is None:
        _ASYNC_BARRIER = asyncio.Barrier(2)
    async with asyncio.timeout(10):  # a TimeoutError means the calls never overlapped
        await _ASYNC_BARRIER.wait()
    return Text(text=inp.text)


def logged_hangs_once(inp: Text) -> Text:
    """Hangs on the first call in this test directory (until its process is killed), then
    returns at once."""
    marker = Path(os.environ["BATON_TEST_DIR"]) / f"hung-{inp.text}"
    _log("logged_hangs_once", {"text": inp.text})
    if not marker.exists():
        marker.write_text("seen")
        threading.Event().wait(60)
    return Text(text=inp.text + "!")


BLOCKED = threading.Event()  # set by `fails_then_blocks` once a call is waiting
RELEASE = threading.Event()  # what those calls wait for


def fails_then_blocks(inp: Text) -> Text:
    """Fails its first call (in this process); later calls wait for RELEASE."""
    CALLS["fails_then_blocks"] += 1
    if CALLS["fails_then_blocks"] == 1:
        raise ConnectionError("upstream reset")
    BLOCKED.set()
    RELEASE.wait(60)
    return Text(text=inp.text + "~")
