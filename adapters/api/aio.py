"""`baton.AsyncBaton`: the same methods as `Baton`, awaitable.

Async agents run on the caller's event loop, as coroutines among its other tasks; sync agents
run on Baton's worker threads. Everything that blocks (the store, the runner waiting for the
next completion, importing a plan's agents) runs on a thread of its own, one per call, so the
loop is never blocked and many goals can be driven at once. Cancelling an awaiting `run` does not
stop the goal (its events are already stored): `cancel` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any, TypeVar, overload

from baton.api.client import Baton
from baton.api.plans import PlanSource
from baton.api.results import GoalResult, GoalSummary
from baton.domain.replay import ReplayResult
from baton.runtime.loading import LoadedPlan
from baton.runtime.runner import DEFAULT_CONCURRENCY

__all__ = ["AsyncBaton"]

T = TypeVar("T")


async def _in_thread(call: Callable[[], T]) -> T:
    """`call()` on a thread of its own; its result (or exception) back on the running loop.

    Not `asyncio.to_thread`: its executor has a few threads only, and one driven goal holds one
    for as long as the goal runs.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    context = contextvars.copy_context()  # the caller's contextvars, as `asyncio.to_thread`

    def work() -> None:
        try:
            result = context.run(call)
        except BaseException as exc:
            outcome: tuple[T | None, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        with contextlib.suppress(RuntimeError):  # the loop has closed: no one awaits it now
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=work, name="baton-api", daemon=True).start()
    return await future


class AsyncBaton:
    """`Baton` for asyncio: `async with baton.AsyncBaton(url) as bt: await bt.run(plan, {...})`."""

    def __init__(self, url: str | None = None) -> None:
        self._baton = Baton(url)

    @property
    def url(self) -> str:
        return self._baton.url

    def __repr__(self) -> str:
        return "Async" + repr(self._baton)  # the store as `Baton` shows it, a password masked

    async def open(self) -> AsyncBaton:
        await _in_thread(self._baton.open)
        return self

    async def close(self) -> None:
        await _in_thread(self._baton.close)

    async def __aenter__(self) -> AsyncBaton:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def run(
        self,
        plan: PlanSource | LoadedPlan,
        input: Any = None,
        *,
        goal_id: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> GoalResult:
        loop = asyncio.get_running_loop()
        return await _in_thread(lambda: self._baton._run(
            plan, input, goal_id=goal_id, concurrency=concurrency, agent_loop=loop
        ))

    async def submit(
        self,
        plan: PlanSource | LoadedPlan,
        input: Any = None,
        *,
        goal_id: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> str:
        return await _in_thread(lambda: self._baton.submit(
            plan, input, goal_id=goal_id, concurrency=concurrency
        ))

    async def resume(self, goal_id: str, *, concurrency: int | None = None) -> GoalResult:
        loop = asyncio.get_running_loop()
        return await _in_thread(lambda: self._baton._resume(
            goal_id, concurrency=concurrency, agent_loop=loop
        ))

    async def resolve(
        self,
        goal_id: str,
        task: str,
        action: str,
        *,
        output: Any = None,
        reason: str,
        by: str | None = None,
    ) -> GoalResult:
        return await _in_thread(lambda: self._baton.resolve(
            goal_id, task, action, output=output, reason=reason, by=by
        ))

    async def answer(
        self, goal_id: str, task: str, answer: str, *, by: str | None = None
    ) -> GoalResult:
        return await _in_thread(lambda: self._baton.answer(goal_id, task, answer, by=by))

    async def cancel(self, goal_id: str, *, reason: str, by: str | None = None) -> GoalResult:
        return await _in_thread(lambda: self._baton.cancel(goal_id, reason=reason, by=by))

    @overload
    async def status(self, goal_id: str) -> GoalResult: ...

    @overload
    async def status(self, goal_id: None = None) -> list[GoalSummary]: ...

    async def status(self, goal_id: str | None = None) -> GoalResult | list[GoalSummary]:
        return await _in_thread(lambda: self._baton.status(goal_id))

    async def audit(
        self, goal: str | os.PathLike[str], *, task: str | None = None
    ) -> dict[str, Any]:
        return await _in_thread(lambda: self._baton.audit(goal, task=task))

    async def replay(
        self, goal: str | os.PathLike[str], *, at: int | None = None, reexecute: bool = False
    ) -> ReplayResult:
        return await _in_thread(lambda: self._baton.replay(goal, at=at, reexecute=reexecute))

    async def fork(
        self,
        goal: str | os.PathLike[str],
        *,
        at: int,
        goal_id: str | None = None,
        run: bool = False,
    ) -> GoalResult:
        loop = asyncio.get_running_loop()
        return await _in_thread(lambda: self._baton._fork(
            goal, at=at, goal_id=goal_id, run=run, agent_loop=loop
        ))

    async def export_run(self, goal_id: str, file: str | os.PathLike[str] | IO[str]) -> int:
        return await _in_thread(lambda: self._baton.export_run(goal_id, file))

    async def import_run(self, file: str | os.PathLike[str]) -> str:
        return await _in_thread(lambda: self._baton.import_run(file))
