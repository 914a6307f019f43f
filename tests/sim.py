"""A goal driven by hand, in memory: the decision core without a store, threads or a clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from baton.domain.decide import settle
from baton.domain.goal import Goal
from baton.domain.state import RULES
from tests.support import load

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Sim:
    """A goal driven by hand: observe what the test says, settle, inspect the decisions."""

    def __init__(self, data: dict[str, Any], goal_input: Any = None, *, concurrency: int = 8,
                 goal_id: str = "g-1", rules: int = RULES) -> None:
        self.loaded = load(data)
        self.goal = Goal.start(goal_id=goal_id, plan=self.loaded.plan,
                               goal_input=goal_input or {"text": "hi"},
                               concurrency=concurrency, at=T0, rules=rules)
        self.now = T0
        self.last = settle(self.goal, self.loaded.contracts)

    def observe(self, kind: str, seconds: float = 1.0, **fields: Any) -> list[tuple[str, Any]]:
        self.now += timedelta(seconds=seconds)
        self.goal.observe(kind, at=self.now, **fields)
        self.last = settle(self.goal, self.loaded.contracts)
        return self.summary()

    def returned(self, task_id: str, output: Any, **kw: Any) -> list[tuple[str, Any]]:
        attempt = self.goal.state.tasks[task_id].in_flight
        return self.observe("AgentReturned", task=task_id, attempt=attempt, output=output,
                            duration_ms=1.0, **kw)

    def raised(self, task_id: str, message: str = "boom") -> list[tuple[str, Any]]:
        attempt = self.goal.state.tasks[task_id].in_flight
        return self.observe("AgentRaised", task=task_id, attempt=attempt,
                            error_type="RuntimeError", message=message, duration_ms=1.0)

    def summary(self) -> list[tuple[str, Any]]:
        return [(d.kind, getattr(d, "task", None)) for d in self.last]

    def status(self, task_id: str) -> str:
        return self.goal.state.tasks[task_id].status
