"""The goal's state as folded from its events: plain data that `decide` reads.

Nothing here decides anything; event mutators in `domain.goal` assign these fields and nothing
else does, so the state is a pure function of the event log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.plan import Plan

__all__ = ["GoalState", "Outcome", "TaskState", "Usage"]


@dataclass
class Usage:
    tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class Outcome:
    """What one attempt produced, as observed, awaiting the orchestrator's verdict."""

    attempt: int
    kind: str  # "returned" | "raised" | "timed_out" | "human"
    output: Any = None
    error: str | None = None  # "Type: message" for raised, a note for the rest


@dataclass
class TaskState:
    id: str
    status: str = "pending"
    attempts: int = 0  # dispatches, the figure users see
    failures: int = 0  # failed attempts, counted against the task's retry policy
    in_flight: int | None = None  # the attempt now running, if any
    outcome: Outcome | None = None  # observed and not yet judged
    output: Any = None  # the accepted output (JSON), what downstream tasks read
    last_error: str | None = None
    reason: str | None = None
    due_at: datetime | None = None  # when a scheduled retry may start
    reserved: Usage | None = None  # the estimate held for the running attempt
    used: Usage = field(default_factory=Usage)
    granted_attempts: int = 0  # attempts a human allowed beyond an exhausted budget
    resolution: str | None = None  # a human's pending `retry` or `abandon`
    idempotency_key: str | None = None


@dataclass
class GoalState:
    goal_id: str
    plan: Plan
    input: Any
    started_at: datetime
    now: datetime
    concurrency: int
    status: str = "running"
    tasks: dict[str, TaskState] = field(default_factory=dict)
    output: Any = None
    reason: str | None = None
    attempts_used: int = 0
    used: Usage = field(default_factory=Usage)
    # Attempts that were in flight when a runner took the goal up again: their outcome is
    # unknown, so decide must re-dispatch or escalate them (task id -> attempt).
    orphaned: dict[str, int] = field(default_factory=dict)
    cancel_requested: str | None = None
    # A waiting goal moves on only when a runner takes it up again (`baton resume`): recording
    # a human's decision must not dispatch work that no process is there to run.
    resume_requested: bool = False
    forked_from: str | None = None

    @property
    def in_flight(self) -> int:
        return sum(1 for task in self.tasks.values() if task.status == "running")

    @property
    def reserved(self) -> Usage:
        tokens, cost = 0, 0.0
        for task in self.tasks.values():
            if task.reserved is not None:
                tokens += task.reserved.tokens
                cost += task.reserved.cost_usd
        return Usage(tokens, cost)

    def outputs(self) -> dict[str, Any]:
        """Accepted outputs by task id: the only data bindings may read."""
        return {tid: t.output for tid, t in self.tasks.items() if t.status == "succeeded"}
