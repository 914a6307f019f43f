"""Today's agents for re-execution (`baton replay --reexecute --call-agents`).

Re-execution answers every attempt from the recording unless asked for this: then each
dispatched attempt calls the plan's agent for real (LLM agents call their models, with the same
attempt context and cost allowance the live run built), and the first answer that differs from
the recording is the divergence. Each call is held to its task's `timeout_s`, as the runner
holds it (past it the attempt times out and the call is left running on a daemon thread, as
the runner leaves a thread-isolated one); isolation is not applied.

Tasks whose `side_effects` is `unsafe` are never called again: their agents' side effects are
not safe to repeat (the runner never re-runs them automatically either), so they answer with
their recorded outcomes, as in re-execution without `--call-agents`.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from baton.domain.goal import GoalEvent
from baton.history.recorded import RecordedAgents, RecordedTimeout
from baton.runtime.loading import LoadedPlan

__all__ = ["LiveAgents", "llm_agent_names", "unsafe_task_ids"]


def llm_agent_names(loaded: LoadedPlan) -> list[str]:
    """The plan's agents that call a model (pydantic-ai Agents and `llm:` declarations)."""
    return sorted(name for name, agent in loaded.agents.items() if getattr(agent, "is_llm", 0))


def unsafe_task_ids(loaded: LoadedPlan) -> list[str]:
    """The plan's tasks that `--call-agents` answers from the recording (`unsafe`)."""
    return [spec.id for spec in loaded.plan.tasks if spec.side_effects == "unsafe"]


class LiveAgents:
    def __init__(self, loaded: LoadedPlan, events: Sequence[GoalEvent]) -> None:
        self.loaded = loaded
        self.plan = loaded.plan  # the goal's as re-execution goes, with the tasks it added
        self.recorded = RecordedAgents(events)  # answers the `unsafe` tasks, always

    def call(
        self, task: str, attempt: int, agent_input: BaseModel,
        idempotency_key: str | None = None, context: BaseModel | None = None,
    ) -> Any:
        spec = self.plan.task_map[task]
        if spec.side_effects == "unsafe":
            return self.recorded.call(task, attempt, agent_input, idempotency_key, context)
        agent = self.loaded.agents[spec.agent]
        kwargs: dict[str, Any] = {}
        if idempotency_key:
            kwargs["idempotency_key"] = idempotency_key
        if context is not None and self.loaded.contracts[spec.agent].takes_attempt:
            kwargs["attempt"] = context
        return _within(self.plan.timeout_for(spec), lambda: agent(agent_input, **kwargs),
                       f"task {task!r} attempt {attempt}")


def _within(timeout: float | None, call: Callable[[], Any], what: str) -> Any:
    """`call()` (awaited when it is a coroutine), or `RecordedTimeout` past `timeout` seconds:
    a re-executed attempt that hangs times out as the live one did, not the replay with it."""

    def finished() -> Any:
        result = call()
        return asyncio.run(result) if inspect.iscoroutine(result) else result

    if timeout is None:
        return finished()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = finished()
        except BaseException as exc:  # handed to the caller: the agent's own raise
            outcome["error"] = exc

    # In the caller's context: what the goal's budget leaves the attempt is a context variable
    # (baton.runtime.spending) that an LLM agent reads before each request.
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(run,), name=f"baton-reexecute {what}",
                              daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise RecordedTimeout(f"{what}: no result within {timeout:g}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
