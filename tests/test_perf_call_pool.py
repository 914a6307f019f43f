"""CallPool starts agent threads lazily: one per call that finds every started thread busy.

Overlap is observed (barriers that break if calls do not run at the same time, thread
identities), never timed. Every wait has a generous timeout so a bug fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

from pydantic import BaseModel

from baton.runtime.calls import AgentCall, CallPool, Completion

WAIT = 10  # seconds; only reached when the behaviour under test is broken


class Note(BaseModel):
    text: str


def _call(task: str, agent: Any, attempt: int = 1) -> AgentCall:
    return AgentCall(
        task=task,
        attempt=attempt,
        agent=agent,
        agent_input=Note(text=task),
        idempotency_key=None,
        is_async=False,
        timeout_s=None,
    )


def _threads_of(pool: CallPool, calls: list[AgentCall]) -> list[Completion]:
    for call in calls:
        pool.submit(call)
    return [pool.completions.get(timeout=WAIT) for _ in calls]


def test_calls_one_after_another_run_on_one_thread() -> None:
    seen: list[int] = []

    def record(inp: Note) -> Note:
        seen.append(threading.get_ident())
        return inp

    pool = CallPool(workers=8)
    try:
        for i in range(5):  # a chain: the next call is submitted once the last one completed
            (done,) = _threads_of(pool, [_call(f"t{i}", record)])
            assert done.kind == "AgentReturned"
    finally:
        pool.close()
    assert len(seen) == 5 and len(set(seen)) == 1


def test_independent_calls_submitted_together_run_at_the_same_time() -> None:
    barrier = threading.Barrier(4)

    def meet(inp: Note) -> Note:
        barrier.wait(timeout=WAIT)  # BrokenBarrierError unless all four run at once
        return inp

    pool = CallPool(workers=4)
    try:
        done = _threads_of(pool, [_call(f"t{i}", meet) for i in range(4)])
    finally:
        pool.close()
    assert [c.kind for c in done] == ["AgentReturned"] * 4, [c.fields for c in done]


def test_never_more_threads_than_workers() -> None:
    barrier = threading.Barrier(2)
    seen: set[int] = set()

    def meet(inp: Note) -> Note:
        seen.add(threading.get_ident())
        barrier.wait(timeout=WAIT)  # pairs meet: two threads must be running
        return inp

    pool = CallPool(workers=2)
    try:
        done = _threads_of(pool, [_call(f"t{i}", meet) for i in range(4)])
    finally:
        pool.close()
    assert [c.kind for c in done] == ["AgentReturned"] * 4, [c.fields for c in done]
    assert len(seen) == 2


def test_a_thread_stuck_in_a_timed_out_call_is_replaced() -> None:
    release = threading.Event()
    started = threading.Event()

    def hang(inp: Note) -> Note:
        started.set()
        release.wait(timeout=WAIT)
        return inp

    pool = CallPool(workers=1)
    try:
        pool.submit(_call("stuck", hang))
        assert started.wait(timeout=WAIT)
        pool.abandon("stuck", 1)  # the runner recorded a timeout; the thread stays in the call
        (done,) = _threads_of(pool, [_call("next", lambda inp: inp)])
        assert (done.task, done.kind) == ("next", "AgentReturned")
        assert not release.is_set()  # it ran while the stuck call was still running
        release.set()
        late = pool.completions.get(timeout=WAIT)  # the late result still comes back
        assert (late.task, late.kind) == ("stuck", "AgentReturned")
    finally:
        release.set()
        pool.close()


def test_closing_the_pool_closes_the_event_loop_it_started() -> None:
    """Left running or unclosed, the loop would be finalized with the interpreter, where
    asyncio's clean-up may write to the stderr of a command that must end quietly."""
    loop_threads: list[threading.Thread] = []

    async def echo(inp: Note) -> Note:
        loop_threads.append(threading.current_thread())
        return inp

    pool = CallPool(workers=1)
    call = dataclasses.replace(_call("a", echo), is_async=True)
    (done,) = _threads_of(pool, [call])
    assert done.kind == "AgentReturned"
    loop = pool._loop
    assert loop is not None and not loop.is_closed()
    pool.close()
    assert loop.is_closed() and not loop_threads[0].is_alive()
    pool.close()  # twice: nothing left to stop


def test_closing_the_pool_with_an_async_call_still_running_closes_its_loop() -> None:
    """A goal that ends (fails, is cancelled) while an async agent still awaits: its call is
    cancelled, and needs turns of the loop to end before the loop can be closed."""
    started = threading.Event()
    ended: list[str] = []

    async def waits(inp: Note) -> Note:
        started.set()
        try:
            await asyncio.sleep(WAIT)
        finally:
            ended.append("cancelled")
        return inp

    pool = CallPool(workers=1)
    pool.submit(dataclasses.replace(_call("a", waits), is_async=True))
    assert started.wait(timeout=WAIT)
    loop = pool._loop
    assert loop is not None
    pool.close()
    assert ended == ["cancelled"] and loop.is_closed()
