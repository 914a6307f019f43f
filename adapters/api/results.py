"""What the Python API returns: the JSON shapes of the CLI (docs/reference.md, "JSON shapes")
as attributes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from baton.domain.goal import Goal

__all__ = ["GoalResult", "GoalSummary", "TaskResult"]


@dataclass(frozen=True)
class TaskResult:
    """One task of a goal: its status and how many attempts it has had; an escalated task also
    says what it waits for (`failure`, `low_confidence`, `budget`, `outcome_unknown`,
    `clarification`, `approval`) and, for a clarification, the question."""

    status: str
    attempts: int
    waiting_for: str | None = None
    question: str | None = None

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"status": self.status, "attempts": self.attempts}
        if self.waiting_for is not None:  # only while escalated: the shape stays as it was
            shown["waiting_for"] = self.waiting_for
        if self.question is not None:
            shown["question"] = self.question
        return shown


@dataclass(frozen=True)
class GoalResult:
    """A goal as `run --json` shows it: `goal_id`, `status` (running, waiting, completed,
    failed, cancelled), `output` (once completed), `reason` (why it ended or waits) and
    `tasks[id].status / .attempts`; from `status`, also `owner` (None, or the process that
    drives it, as `status GOAL --json` shows it: `{"host", "pid", "since", "alive"}`)."""

    goal_id: str
    status: str
    output: Any
    reason: str | None
    tasks: Mapping[str, TaskResult]
    owner: Mapping[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Did the goal complete?"""
        return self.status == "completed"

    @classmethod
    def of_goal(cls, goal: Goal) -> GoalResult:
        """From the aggregate (what `run`, `resume`, `resolve` and `cancel` leave behind)."""
        state = goal.state
        tasks = {
            tid: TaskResult(
                task.status,
                task.attempts,
                task.waiting_for if task.status == "escalated" else None,
                task.question if task.status == "escalated" else None,
            )
            for tid, task in state.tasks.items()
        }
        return cls(goal.id, state.status, state.output, state.reason, tasks)

    @classmethod
    def of_json(cls, data: Mapping[str, Any]) -> GoalResult:
        """From the `run --json` / `status GOAL --json` shape."""
        tasks = {tid: TaskResult(task["status"], task["attempts"], task.get("waiting_for"),
                                 task.get("question"))
                 for tid, task in data["tasks"].items()}
        return cls(data["goal_id"], data["status"], data.get("output"), data.get("reason"), tasks,
                   data.get("owner"))

    def to_json(self) -> dict[str, Any]:
        """The `run --json` shape."""
        return {
            "goal_id": self.goal_id,
            "status": self.status,
            "output": self.output,
            "reason": self.reason,
            "tasks": {tid: task.to_json() for tid, task in self.tasks.items()},
        }


@dataclass(frozen=True)
class GoalSummary:
    """One goal in `status` without a goal id: from the goal_summary read model."""

    goal_id: str
    plan: str
    status: str
    updated_at: datetime
    started_at: datetime
    ended_at: datetime | None

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> GoalSummary:
        return cls(row["goal_id"], row["plan"], row["status"], row["updated_at"],
                   row["started_at"], row["ended_at"])
