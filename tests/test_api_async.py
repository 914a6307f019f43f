"""`baton.AsyncBaton`: async agents run on the caller's event loop, which is never blocked.

Nothing here is timed: the agents wait on events that only another coroutine of the same loop
sets, so a blocked loop (or agents on another loop) shows as a `TimeoutError` after WAIT seconds,
never as a slow pass. Ordering is asserted from what each side appended.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from pydantic import BaseModel

import baton

WAIT = 30  # seconds; only reached when the behaviour under test is broken


class Words(BaseModel):
    text: str


class Count(BaseModel):
    words: int


class _Gate:
    """What the agents and the test's other coroutine share, made on the test's loop."""

    def __init__(self, waiting_for: int) -> None:
        self.order: list[str] = []
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.threads: list[int] = []  # where the async agents ran
        self.sync_threads: list[int] = []
        self.waiting = 0
        self.waiting_for = waiting_for
        self.all_waiting = asyncio.Event()
        self.open = asyncio.Event()


GATE: _Gate | None = None


async def count_when_let_through(inp: Words) -> Count:
    assert GATE is not None
    GATE.loops.append(asyncio.get_running_loop())
    GATE.threads.append(threading.get_ident())
    GATE.order.append(f"agent {inp.text} waits")
    GATE.waiting += 1
    if GATE.waiting == GATE.waiting_for:
        GATE.all_waiting.set()
    await GATE.open.wait()
    GATE.order.append(f"agent {inp.text} resumes")
    return Count(words=len(inp.text))


def sync_count(inp: Words) -> Count:
    assert GATE is not None
    GATE.sync_threads.append(threading.get_ident())
    return Count(words=len(inp.text))


async def refuses(inp: Count) -> Count:
    raise RuntimeError("down")


async def double(inp: Count) -> Count:
    await asyncio.sleep(0)
    return Count(words=inp.words * 2)


def _plan(*tasks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"version": 1, "name": "async", "tasks": list(tasks), **extra}


def test_async_agents_run_on_the_callers_loop_without_blocking_it(store_url: str) -> None:
    global GATE
    plan = baton.load_plan(
        _plan(
            {"id": "left", "agent": "gated", "input": {"text": "$goal.left"}},
            {"id": "right", "agent": "gated", "input": {"text": "$goal.right"}},
            {"id": "sync", "agent": "sync", "input": {"text": "$goal.left"}},
            output={"left": "$left.words", "right": "$right.words"},
        ),
        agents={"gated": count_when_let_through, "sync": sync_count},
    )

    async def main() -> tuple[baton.GoalResult, asyncio.AbstractEventLoop, int]:
        global GATE
        GATE = _Gate(waiting_for=2)
        async with baton.AsyncBaton(store_url) as bt:
            run = asyncio.create_task(bt.run(plan, {"left": "ab", "right": "abc"}))
            # Both agents are suspended in `await` at the same time, and this coroutine runs on.
            await asyncio.wait_for(GATE.all_waiting.wait(), WAIT)
            ticks = 0
            for _ in range(50):
                await asyncio.sleep(0)
                ticks += 1
            GATE.order.append(f"other coroutine ran {ticks} steps")
            GATE.open.set()
            result = await asyncio.wait_for(run, WAIT)
        return result, asyncio.get_running_loop(), threading.get_ident()

    result, loop, thread = asyncio.run(main())
    assert GATE is not None
    assert result.status == "completed" and result.output == {"left": 2, "right": 3}
    assert GATE.loops == [loop, loop]  # on the caller's loop, in the caller's thread
    assert GATE.threads == [thread, thread]
    assert len(GATE.sync_threads) == 1 and GATE.sync_threads[0] != thread  # sync: on a thread
    assert sorted(GATE.order[:2]) == ["agent ab waits", "agent abc waits"]
    assert GATE.order[2] == "other coroutine ran 50 steps"
    assert sorted(GATE.order[3:]) == ["agent ab resumes", "agent abc resumes"]
    GATE = None


def test_many_goals_at_once_and_the_human_in_the_loop(store_url: str) -> None:
    counting = baton.load_plan(
        _plan({"id": "double", "agent": "double", "input": {"words": "$goal.words"}},
              output="$double"),
        agents={"double": double},
    )
    escalating = baton.load_plan(
        _plan({"id": "double", "agent": "refuses", "input": {"words": "$goal.words"},
               "on_failure": "escalate", "retry": {"max_attempts": 1}}, output="$double"),
        agents={"refuses": refuses},
    )

    async def main() -> None:
        async with baton.AsyncBaton(store_url) as bt:
            results = await asyncio.gather(
                *(bt.run(counting, {"words": n}) for n in range(6))
            )
            assert sorted(r.output["words"] for r in results) == [0, 2, 4, 6, 8, 10]
            waiting = await bt.run(escalating, {"words": 4})
            assert waiting.status == "waiting"
            await bt.resolve(waiting.goal_id, "double", "output", output={"words": 8},
                             reason="by hand", by="ana")
            done = await bt.resume(waiting.goal_id)
            assert (done.status, done.output) == ("completed", {"words": 8})
            assert (await bt.status(done.goal_id)).status == "completed"
            other = await bt.run(escalating, {"words": 1})
            assert (await bt.cancel(other.goal_id, reason="no")).status == "cancelled"
            assert (await bt.replay(done.goal_id)).ok
            assert len(await bt.status()) == 8

    asyncio.run(main())
