"""The pure part of the projection: fold goal events into read-model rows held in memory.

No I/O here. A view loads the rows a batch of events touches, `ViewFold.apply` updates them
event by event, and the view writes the dirty rows back with the tracking position in one
transaction. Statuses move by the same lifecycle tables the aggregate checks, so the projected
status of a task is the aggregate's own, never a second opinion.

What `agent_stats` counts, per agent name (an *attempt* is one dispatch):
- `attempts`: dispatches; `succeeded`: attempts whose *agent* output was accepted (a human's
  output is not the agent's success); `failed`: attempts that raised, timed out, or whose
  output was rejected; `rejected_outputs` and `timed_out`: those two parts of `failed`;
  `interrupted`: attempts a crash left without an outcome (re-dispatched, or escalated when
  unsafe), or that a cancel or a goal's failure (a deadline) ended while they ran;
  `retries`: retries scheduled;
  `escalations`: escalations of its tasks to a human.
- `tokens` / `cost_usd`: usage reported with its results, including results that arrived too late
  to count for their attempt (the spend happened), and what a timed-out attempt had spent when
  it was abandoned; durations of results likewise feed the percentiles.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from baton.domain.decisions import GOAL_ENDINGS
from baton.domain.errors import BatonError
from baton.domain.gates import escalation_kind
from baton.domain.lifecycle import GOAL_TRANSITIONS, TASK_TRANSITIONS
from baton.domain.state import RESOLVED_WAIT, waiting_reason
from baton.projections.schema import AGENT_STATS, MODEL_STATS, TASK_STATUSES

__all__ = ["ProjectionError", "Row", "ViewFold", "ViewsReset"]

Row = dict[str, Any]


class ProjectionError(BatonError):
    """An event the read models cannot apply (the log and the projection code disagree)."""


class ViewsReset(ProjectionError):
    """The views' tracked position went back under a follower: a rebuild reset them."""


def _new_agent(agent: str) -> Row:
    row: Row = dict.fromkeys(AGENT_STATS.names, 0)
    row.update(agent=agent, cost_usd=0.0, p50_ms=None, p95_ms=None, p50_position=None,
               p95_position=None)
    return row


class ViewFold:
    """Rows of the batch being projected, and which of them changed."""

    def __init__(
        self,
        goals: dict[str, Row],
        tasks: dict[tuple[str, str], Row],
        agents: dict[str, Row],
        models: dict[tuple[str, str], Row] | None = None,
    ) -> None:
        self.goals = goals
        self.tasks = tasks
        self.agents = agents
        self.models = models if models is not None else {}
        self.dirty_models: set[tuple[str, str]] = set()
        self.dirty_goals: set[str] = set()
        self.dirty_tasks: set[tuple[str, str]] = set()
        self.dirty_agents: set[str] = set()
        self.latencies: list[Row] = []
        # Whether the event being applied is one a fork copied, and whether it is about an
        # attempt dispatched before the fork point: each attempt counts once in agent_stats,
        # model_stats and agent_latency, in the goal it ran in (`attempt_stats`).
        self.copied = False
        self.copied_attempt = False
        # Each goal's task rows, built on first need (a human's decision on a waiting goal):
        # a batch may hold the rows of thousands of goals.
        self._tasks_of: dict[str, list[Row]] | None = None

    # --- the fold ---

    def apply(self, event: Any, position: int) -> None:
        """Apply one stored goal event, `position` being its notification id."""
        kind = type(event).__name__
        goal_id = str(event.originator_id)
        at: datetime = event.timestamp
        if kind == "Started":
            self._started(event, goal_id, at)
        goal = self.goals.get(goal_id)
        if goal is None:
            raise ProjectionError(
                f"event {position} ({kind}) of goal {goal_id!r} precedes the goal's Started event"
            )
        # Plain item assignments: this runs for every event of every rebuild.
        goal["updated_at"] = at
        goal["events"] = event.originator_version
        goal["position"] = position
        self.dirty_goals.add(goal_id)
        task = None
        task_id = getattr(event, "task", None)
        forked_at = goal["forked_at"]
        self.copied = self.copied_attempt = (
            forked_at is not None and event.originator_version <= forked_at)
        if task_id is not None:
            key = (goal_id, task_id)
            task = self.tasks.get(key)
            if task is None:
                raise ProjectionError(f"event {position} ({kind}): goal {goal_id!r} has no "
                                      f"task {task_id!r}")
            if forked_at is not None and not self.copied:
                # an event that names no attempt (a cancel, an escalation) is about the one
                # in flight
                attempt = getattr(event, "attempt", None) or task["attempt_in_flight"]
                self.copied_attempt = (
                    attempt is not None and attempt <= task["forked_attempts"])
            task["updated_at"] = at
            self.dirty_tasks.add(key)
            if not event.observation:
                reason = getattr(event, "reason", None)
                if reason is not None:
                    task["last_reason"] = reason
                    task["last_rule"] = event.rule
            if event.task_event is not None:
                for move in event.task_events(event.__dict__):
                    self._move_task(goal, task, move, at, position)
        if event.goal_event is not None:
            self._move_goal(goal, event.goal_event, position, kind)
            goal["reason"] = event.reason
            if kind in GOAL_ENDINGS:
                goal["ended_at"] = at
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, event, goal, task, position)

    # --- helpers ---

    def _started(self, event: Any, goal_id: str, at: datetime) -> None:
        plan = event.plan
        tasks = plan["tasks"]
        goal: Row = {
            "goal_id": goal_id,
            "plan": plan["name"],
            "status": "running",
            "reason": None,
            "started_at": at,
            "ended_at": None,
            "forked_from": event.forked_from,
            "forked_at": event.forked_at,
            "tasks": len(tasks),
            **{f"tasks_{status}": 0 for status in TASK_STATUSES},
            "attempts": 0,
            "tokens": 0,
            "cost_usd": 0.0,
            "output": None,
        }
        goal["tasks_pending"] = len(tasks)
        self.goals[goal_id] = goal
        for index, spec in enumerate(tasks):
            self.add_task(goal_id, spec["id"], index, spec["agent"], at)

    def add_task(
        self, goal_id: str, task_id: str, index: int, agent: str, at: datetime,
        added_by: str | None = None,
    ) -> None:
        """A task row: one per task of the plan, and per task a planner or a map added."""
        key = (goal_id, task_id)
        row: Row = {
            "goal_id": goal_id,
            "task_id": task_id,
            "plan_index": index,
            "agent": agent,
            "status": "pending",
            "attempts": 0,
            "last_error": None,
            "last_reason": None,
            "last_rule": None,
            "updated_at": at,
            "status_since": at,
            "duration_ms": 0.0,
            "tokens": 0,
            "cost_usd": 0.0,
            "attempt_in_flight": None,
            "last_outcome": None,
            "waiting_for": None,
            "question": None,
            "approval_input": None,
            "added_by": added_by,
            "forked_attempts": 0,
        }
        self.tasks[key] = row
        self.dirty_tasks.add(key)
        if self._tasks_of is not None:
            self._tasks_of.setdefault(goal_id, []).append(row)

    def _move_task(self, goal: Row, task: Row, event: str, at: datetime, position: int) -> None:
        source = task["status"]
        target = TASK_TRANSITIONS.get((source, event))
        if target is None:
            raise ProjectionError(
                f"event {position}: task {task['task_id']!r} of goal {goal['goal_id']!r} "
                f"cannot {event} from {source}"
            )
        task.update(status=target, status_since=at)
        goal[f"tasks_{source}"] -= 1
        goal[f"tasks_{target}"] += 1
        if source == "escalated" and target != "escalated":
            task.update(waiting_for=None, question=None, approval_input=None)
            if goal["status"] == "waiting":
                goal["reason"] = self._waiting_reason(goal)
        elif target == "escalated" and source != "escalated" and goal["status"] == "waiting":
            # escalated again after a human's decision (its `last_reason` is already this
            # event's): the goal waits on it too, as the aggregate folds it (GoalState.move)
            goal["reason"] = self._waiting_reason(goal)

    def _waiting_reason(self, goal: Row) -> str:
        """A waiting goal's reason once a human's decision moved one of its tasks on: what it
        still waits for, as the aggregate folds it (GoalState.move)."""
        if not goal["tasks_escalated"]:
            return RESOLVED_WAIT
        if self._tasks_of is None:
            self._tasks_of = {}
            for (of, _), row in self.tasks.items():
                self._tasks_of.setdefault(of, []).append(row)
        escalated = sorted(
            (row for row in self._tasks_of[goal["goal_id"]] if row["status"] == "escalated"),
            key=lambda row: row["plan_index"],
        )
        return waiting_reason((row["task_id"], row["last_reason"]) for row in escalated)

    def _move_goal(self, goal: Row, event: str, position: int, kind: str) -> None:
        target = GOAL_TRANSITIONS.get((goal["status"], event))
        if target is None:
            raise ProjectionError(
                f"event {position} ({kind}): goal {goal['goal_id']!r} cannot {event} from "
                f"{goal['status']}"
            )
        goal["status"] = target

    def agent(self, task: Row) -> Row:
        name: str = task["agent"]
        row = self.agents.get(name)
        if row is None:
            row = self.agents[name] = _new_agent(name)
        self.dirty_agents.add(name)
        return row

    def attempt_stats(self, task: Row) -> Row:
        """The agent's row for a fact about an attempt (dispatched, its outcome, its usage); a
        scratch row, counted nowhere, when the attempt ran before a fork's copy of it."""
        return _new_agent(task["agent"]) if self.copied_attempt else self.agent(task)

    def decision_stats(self, task: Row) -> Row:
        """The agent's row for a decision about its task (a retry, an escalation); a scratch
        row when a fork copied the decision."""
        return _new_agent(task["agent"]) if self.copied else self.agent(task)

    def spend(self, event: Any, goal: Row, task: Row, position: int) -> Row:
        """Usage and duration reported with a result: the task, the goal and the agent."""
        agent = self.usage(event, goal, task)
        task["duration_ms"] += event.duration_ms
        if self.copied_attempt:
            return agent  # its sample is the goal's it ran in
        self.latencies.append({
            "position": position,
            "agent": task["agent"],
            "goal_id": goal["goal_id"],
            "task_id": task["task_id"],
            "attempt": event.attempt,
            "duration_ms": event.duration_ms,
        })
        return agent

    def usage(self, event: Any, goal: Row, task: Row) -> Row:
        """Usage reported with a result or a timeout: the task, the goal and the agent."""
        agent = self.attempt_stats(task)
        usage = event.usage or {}
        tokens = int(usage.get("tokens", 0) or 0)
        cost = float(usage.get("cost_usd", 0.0) or 0.0)
        for row in (goal, task, agent):
            row["tokens"] += tokens
            row["cost_usd"] = added_cost(row["cost_usd"], cost)
        if event.usage and not self.copied_attempt:
            self._model_usage(task["agent"], usage, tokens, cost)
        return agent

    def _model_usage(self, agent: str, usage: dict[str, Any], tokens: int, cost: float) -> None:
        key = (agent, str(usage.get("model") or "unknown"))
        row = self.models.get(key)
        if row is None:
            row = self.models[key] = dict.fromkeys(MODEL_STATS.names, 0)
            row.update(agent=key[0], model=key[1], cost_usd=0.0)
        self.dirty_models.add(key)
        row["results"] += 1
        row["tokens"] += tokens
        row["cost_usd"] = added_cost(row["cost_usd"], cost)
        for name in ("requests", "input_tokens", "output_tokens", "cache_read_tokens",
                     "cache_write_tokens"):
            row[name] += int(usage.get(name) or 0)


def added_cost(total: float, cost: float) -> float:
    """A running sum of dollars, rounded to 1e-9 (as the budget compares spend): binary float
    sums drift (a thousand $0.001 attempts summed to 1.0000000000000007), and `status --json`
    and `stats --json` printed the drift beside replay's exact figure."""
    return round(total + cost, 9)


# --- per-kind effects beyond status, reason and timestamps (handled in `apply`) ---------------

Handler = Callable[[ViewFold, Any, Row, Any, int], None]


def _dispatched(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    task.update(attempts=event.attempt, attempt_in_flight=event.attempt, last_outcome=None)
    if fold.copied:
        task["forked_attempts"] = event.attempt
    goal["attempts"] += 1
    fold.attempt_stats(task)["attempts"] += 1


def _returned(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    fold.spend(event, goal, task, position)
    if task["attempt_in_flight"] == event.attempt:
        task["last_outcome"] = "returned"


def _raised(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    agent = fold.spend(event, goal, task, position)
    if task["attempt_in_flight"] == event.attempt:
        task["last_outcome"] = "raised"
        agent["failed"] += 1


def _timed_out(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    agent = fold.usage(event, goal, task)  # what it spent before it was abandoned (v2)
    if task["attempt_in_flight"] == event.attempt:
        task["last_outcome"] = "timed_out"
        agent["failed"] += 1
        agent["timed_out"] += 1


def _human(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    task["last_reason"] = f"{event.by}: {event.reason}"
    if event.action == "output":
        task["last_outcome"] = "human"


def _accepted(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    if task["last_outcome"] == "returned":
        fold.attempt_stats(task)["succeeded"] += 1
    task.update(last_error=None, attempt_in_flight=None)


def _rejected(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    task["last_error"] = "; ".join(event.errors)
    if task["last_outcome"] == "returned" and task["attempt_in_flight"] == event.attempt:
        agent = fold.attempt_stats(task)
        agent["failed"] += 1
        agent["rejected_outputs"] += 1


def _input_rejected(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    task["last_error"] = "; ".join(event.errors)


def _retry(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    task.update(last_error=event.failure, attempt_in_flight=None)
    fold.decision_stats(task)["retries"] += 1


def _interrupted(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    task["attempt_in_flight"] = None
    fold.attempt_stats(task)["interrupted"] += 1


def _escalated(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    task["attempt_in_flight"] = None
    task["waiting_for"] = escalation_kind(type(event).__name__, event.rule)
    fold.decision_stats(task)["escalations"] += 1
    if event.rule == "side_effects.unsafe":
        # an unsafe attempt a crash left without an outcome: interrupted, as a re-dispatched
        # one is (AttemptInterrupted), or it would be in no count of `baton stats`
        fold.attempt_stats(task)["interrupted"] += 1


def _asked(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    _escalated(fold, event, goal, task, position)
    task["question"] = event.question


def _approval(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    _escalated(fold, event, goal, task, position)
    task["approval_input"] = event.input


def _answered(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    task["last_reason"] = f"{event.by}: answered {event.answer!r}"


def _task_failed(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    task.update(last_error=event.error, attempt_in_flight=None)


def _task_ended(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    task["attempt_in_flight"] = None


def _cancelled(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    if task["attempt_in_flight"] is not None and task["last_outcome"] is None:
        # cancelled while its attempt ran (`baton cancel`, a deadline): no outcome will count
        # it, so it is interrupted, or `stats` showed more attempts than their outcomes
        fold.attempt_stats(task)["interrupted"] += 1
    task["attempt_in_flight"] = None


def _completed(fold: ViewFold, event: Any, goal: Row, task: Any, position: int) -> None:
    goal["output"] = event.output


def _added(
    fold: ViewFold, goal: Row, added: list[tuple[str, str]], at: datetime, by: str
) -> None:
    """Rows for the tasks a planner or a map (`by`) added, numbered after the goal's others."""
    for task_id, agent in added:
        fold.add_task(goal["goal_id"], task_id, goal["tasks"], agent, at, added_by=by)
        goal["tasks"] += 1
        goal["tasks_pending"] += 1


def _plan_extended(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    agents = [spec["agent"] for spec in event.fragment["tasks"]]
    _added(fold, goal, list(zip(event.added, agents, strict=True)), event.timestamp, event.task)
    task["attempt_in_flight"] = None


def _map_expanded(fold: ViewFold, event: Any, goal: Row, task: Row, position: int) -> None:
    instances = [(f"{event.task}[{index}]", task["agent"]) for index in range(event.width)]
    _added(fold, goal, instances, event.timestamp, event.task)


_HANDLERS: dict[str, Handler] = {
    "TaskDispatched": _dispatched,
    "AgentReturned": _returned,
    "AgentRaised": _raised,
    "AgentTimedOut": _timed_out,
    "HumanResolved": _human,
    "OutputAccepted": _accepted,
    "OutputRejected": _rejected,
    "InputRejected": _input_rejected,
    "RetryScheduled": _retry,
    "AttemptInterrupted": _interrupted,
    "TaskEscalated": _escalated,
    "ClarificationRequested": _asked,
    "ApprovalRequested": _approval,
    "HumanAnswered": _answered,
    "TaskFailed": _task_failed,
    "TaskAbandoned": _task_ended,
    "TaskSkipped": _task_ended,
    "TaskCancelled": _cancelled,
    "GoalCompleted": _completed,
    "PlanExtended": _plan_extended,
    "MapExpanded": _map_expanded,
}
