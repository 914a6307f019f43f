"""The Goal aggregate: one per goal, its state folded only from its events.

Events are past-tense facts of two sorts. *Observations* record what happened outside the
orchestrator (a goal was submitted, an agent returned or raised, the clock moved on, a human
decided). *Decisions* record what the orchestrator concluded from them, each with the `rule` that
made it and a `reason`. Replay re-runs `decide` after every observation and compares.

Mutators (`apply`) only assign. The status a transition leads to comes from the lifecycle tables
(`baton.domain.lifecycle`), checked in `Goal.record` before the event is triggered.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar

from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    MetaDomainEvent,
)

from baton.domain.decisions import Decision
from baton.domain.expansion import extend_with_fragment, extend_with_map
from baton.domain.gates import escalation_kind
from baton.domain.lifecycle import goal_target, task_target
from baton.domain.plan import Plan, plan_key
from baton.domain.state import RULES, GoalState, Outcome, TaskState, Usage
from baton.domain.usage import upcast_usage

__all__ = ["DECISION_KINDS", "OBSERVATION_KINDS", "Goal", "GoalEvent", "canonical_plan"]


@dataclass(frozen=True)
class GoalEvent(CanMutateAggregate[str], metaclass=MetaDomainEvent):
    """Base of every Goal event; goal ids are strings chosen by users or generated."""

    originator_id: str
    originator_version: int
    timestamp: datetime

    observation: ClassVar[bool] = False
    task_event: ClassVar[str | None] = None  # TaskLifecycle event this decision sends

    @classmethod
    def task_events(cls, fields: dict[str, Any]) -> tuple[str, ...]:
        """The TaskLifecycle events a decision with these fields sends, in order: its
        `task_event`, if any (a `TaskDispatched` holding its readiness sends two)."""
        return () if cls.task_event is None else (cls.task_event,)
    goal_event: ClassVar[str | None] = None  # GoalLifecycle event this decision sends


def _task(goal: Goal, event: Any) -> TaskState:
    return goal.state.tasks[event.task]


def _move_task(goal: Goal, event: GoalEvent) -> TaskState:
    task = _task(goal, event)
    if event.task_event is not None:
        for move in event.task_events(event.__dict__):
            target = task_target(task.id, task.status, move)
            if target == "escalated":  # what a waiting goal's reason quotes (GoalState.move)
                task.reason = getattr(event, "reason", task.reason)
            goal.state.move(task, target)
    return task


def _make_ready(task: TaskState, rule: str, reason: str) -> None:
    """What a task's readiness assigns, recorded as `TaskReady` or in a `TaskDispatched`'s
    `ready` (decision rules 3)."""
    task.due_at = None
    task.resolution = None
    task.reason = reason
    task.readied_by = rule


def _conclude_attempt(task: TaskState, state: GoalState) -> None:
    task.in_flight = None
    state.set_outcome(task, None)
    task.reserved = None
    task.resolution = None
    state.orphaned.pop(task.id, None)


class Goal(BaseAggregate[str]):
    """A goal: the accepted plan, the goal input, and each task's status and attempts."""

    class Event(GoalEvent):
        pass

    # --- observations -------------------------------------------------------------------------

    @dataclass(frozen=True)
    class Started(Event, CanInitAggregate[str]):
        """A goal was submitted: the validated plan, the goal input, how wide to run it.

        Version 2 adds `schemas`: the JSON schema of every contract the plan uses, as they were
        when the goal started (`{"agents": {name: {"input", "output"}}, "input": schema|null}`),
        so a run can be checked where its agent modules cannot be imported. Version 1 events
        recorded none (`None`). The goal itself never reads them.

        Version 3 adds `rules`: the version of the decision rules the goal is decided under
        (`baton.domain.state.RULES` when it started). Goals started before recorded none and
        were decided under rules 1, so version 2 events upcast with 1 (and a run file that
        lacks the field reads as 1: the field's default).
        """

        originator_topic: str
        plan: dict[str, Any]
        input: Any
        concurrency: int
        forked_from: str | None = None
        forked_at: int | None = None
        schemas: dict[str, Any] | None = None
        rules: int = 1
        observation: ClassVar[bool] = True
        class_version: ClassVar[int] = 3

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["schemas"] = None  # recorded before Baton kept the contracts' schemas

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["rules"] = 1  # recorded before `rules` was: decided under rules 1

    class RunResumed(Event):
        """A runner took the goal up again; attempts still in flight have no known outcome."""

        concurrency: int
        observation: ClassVar[bool] = True

        def apply(self, goal: Goal) -> None:
            goal.state.concurrency = self.concurrency
            goal.state.now = self.timestamp
            goal.state.resume_requested = True
            goal.state.stop_requested = False  # this runner dispatches again
            goal.state.awaiting_runner = False
            goal.state.orphaned = {
                task.id: task.in_flight
                for task in goal.state.tasks.values()
                if task.status == "running" and task.in_flight is not None and task.outcome is None
            }

    class StopRequested(Event):
        """The runner driving the goal was asked to stop (its process shuts down) while an
        unsafe attempt was in flight: it waits for that attempt's outcome and then leaves. From
        here no new attempt is dispatched (ready tasks stay ready) until a runner takes the goal
        up again (`RunResumed`), so a stopping process starts no new side effect, and none of
        its dispatches is left without an outcome for the next owner's crash rules."""

        observation: ClassVar[bool] = True

        def apply(self, goal: Goal) -> None:
            goal.state.now = self.timestamp
            goal.state.stop_requested = True

    class AgentReturned(Event):
        """An attempt returned; `output` is the raw value as returned, before validation."""

        task: str
        attempt: int
        output: Any
        duration_ms: float
        usage: dict[str, Any] | None = None
        output_error: str | None = None  # set when the value could not be recorded as JSON
        observation: ClassVar[bool] = True
        # v2: `usage` carries the per-model figures (baton.domain.usage); v1 histories upcast.
        class_version: ClassVar[int] = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["usage"] = upcast_usage(state.get("usage"))

        def apply(self, goal: Goal) -> None:
            task = _task(goal, self)
            goal.state.now = self.timestamp
            goal.state.awaiting_runner = False  # a runner records it: it drives the goal
            _account(goal.state, task, self.usage)
            if task.in_flight == self.attempt:
                outcome = Outcome(self.attempt, "returned", self.output, self.output_error)
                goal.state.set_outcome(task, outcome)

    class AgentRaised(Event):
        task: str
        attempt: int
        error_type: str
        message: str
        duration_ms: float
        usage: dict[str, Any] | None = None
        # v2: the failure's own "not before" (a 429's Retry-After), and per-model usage figures
        retry_after_s: float | None = None
        observation: ClassVar[bool] = True
        class_version: ClassVar[int] = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["usage"] = upcast_usage(state.get("usage"))
            state.setdefault("retry_after_s", None)

        def apply(self, goal: Goal) -> None:
            task = _task(goal, self)
            goal.state.now = self.timestamp
            goal.state.awaiting_runner = False  # a runner records it: it drives the goal
            _account(goal.state, task, self.usage)
            if task.in_flight == self.attempt:
                error = f"{self.error_type}: {self.message}"
                outcome = Outcome(self.attempt, "raised", None, error, self.retry_after_s)
                goal.state.set_outcome(task, outcome)

    class AgentTimedOut(Event):
        """An attempt ran past its timeout and was abandoned.

        v2: `usage`, what the attempt had spent when it was abandoned (the requests an LLM agent
        made before the one that hung), counted like a raised attempt's. v1 histories upcast
        with None: nothing was recorded, nothing is counted, as before. The reservation stays
        until the verdict that follows (as under v1), so an old history folds as it did."""

        task: str
        attempt: int
        timeout_s: float
        usage: dict[str, Any] | None = None
        observation: ClassVar[bool] = True
        class_version: ClassVar[int] = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["usage"] = None

        def apply(self, goal: Goal) -> None:
            task = _task(goal, self)
            goal.state.now = self.timestamp
            goal.state.awaiting_runner = False
            _spend(goal.state, task, self.usage)
            if task.in_flight == self.attempt:
                error = f"TimeoutError: no result within {self.timeout_s:g}s"
                goal.state.set_outcome(task, Outcome(self.attempt, "timed_out", None, error))

    class ClockTicked(Event):
        """Time passed with nothing else to report: a backoff or a deadline came due."""

        observation: ClassVar[bool] = True

        def apply(self, goal: Goal) -> None:
            goal.state.now = self.timestamp
            goal.state.awaiting_runner = False

    class HumanResolved(Event):
        """A human decided an escalated task: `retry`, `abandon`, or supply an `output`; or a
        task waiting for approval: `approve` or `reject` (baton.domain.gates)."""

        task: str
        action: str
        reason: str
        by: str
        output: Any = None
        observation: ClassVar[bool] = True

        def apply(self, goal: Goal) -> None:
            task = _task(goal, self)
            goal.state.now = self.timestamp
            goal.state.resume_requested = False  # recorded by `resolve`; `resume` runs it
            goal.state.awaiting_runner = True  # (rules 6) a command: no runner is known to drive
            if self.action == "output":
                goal.state.set_outcome(task, Outcome(task.attempts, "human", self.output, None))
            else:
                task.resolution = self.action
                if self.action == "retry":
                    task.failures = 0
                    task.granted_attempts += 1
                elif self.action == "approve":
                    task.approved = True
            task.reason = f"{self.by}: {self.reason}"

    class CancelRequested(Event):
        reason: str
        by: str
        observation: ClassVar[bool] = True

        def apply(self, goal: Goal) -> None:
            goal.state.now = self.timestamp
            goal.state.cancel_requested = f"{self.by}: {self.reason}"

    # --- task decisions -----------------------------------------------------------------------

    class TaskReady(Event):
        """Every input a task reads has arrived (or its backoff elapsed, or a human retried)."""

        task: str
        inputs: list[str]
        rule: str
        reason: str
        task_event: ClassVar[str | None] = "make_ready"

        def apply(self, goal: Goal) -> None:
            _make_ready(_move_task(goal, self), self.rule, self.reason)

    class TaskDispatched(Event):
        """An attempt was sent to its agent: stored before the agent is called.

        Version 2 adds `attempt_context`: the AttemptContext an agent that declares `attempt`
        is handed (`None` for any other agent). Release 0.1 had no attempt context, so version
        1 events upcast with `None`.

        Version 3 adds `ready`: under decision rules 3, a task made ready and dispatched in one
        step is recorded as this one event, and `ready` holds what its `TaskReady` would have
        (`{"rule", "reason", "inputs"}`); the task moves to `ready` and on to `running`. `None`
        where the task was already ready (a `TaskReady` recorded before, as every dispatch of a
        goal decided under rules 1 or 2 was), so version 2 events upcast with `None`."""

        task: str
        attempt: int
        input_digest: str
        idempotency_key: str
        rule: str
        reason: str
        reserved: dict[str, Any] | None = None
        policy: dict[str, Any] | None = None  # the settings the rule applied
        attempt_context: dict[str, Any] | None = None
        ready: dict[str, Any] | None = None
        task_event: ClassVar[str | None] = "dispatch"
        class_version: ClassVar[int] = 3

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["attempt_context"] = None

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["ready"] = None  # every dispatch before rules 3 followed its own TaskReady

        @classmethod
        def task_events(cls, fields: dict[str, Any]) -> tuple[str, ...]:
            return ("make_ready", "dispatch") if fields.get("ready") is not None else ("dispatch",)

        def apply(self, goal: Goal) -> None:
            task = _move_task(goal, self)  # through `ready` first where it holds the readiness
            if self.ready is not None:
                _make_ready(task, self.ready["rule"], self.ready["reason"])
            task.attempts = self.attempt
            task.in_flight = self.attempt
            task.attempt_context = self.attempt_context
            task.idempotency_key = self.idempotency_key
            task.readied_by = None
            if self.reserved is not None:
                task.reserved = Usage(self.reserved["tokens"], self.reserved["cost_usd"])
            if task.granted_attempts > 0:
                task.granted_attempts -= 1
                task.granted_attempt = self.attempt
            goal.state.attempts_used += 1

    class OutputAccepted(Event):
        """The output passed its contract; `output` is set only where validation normalised it."""

        task: str
        attempt: int
        rule: str
        reason: str
        output: Any = None
        task_event: ClassVar[str | None] = "succeed"

        def apply(self, goal: Goal) -> None:
            task = _task(goal, self)
            raw = task.outcome.output if task.outcome is not None else None
            task.output = self.output if self.output is not None else raw
            _move_task(goal, self)  # after the output: the move publishes it to dependants
            task.last_error = None
            task.reason = self.reason
            _conclude_attempt(task, goal.state)

    class OutputRejected(Event):
        """The output failed its contract or confidence threshold; it is never forwarded."""

        task: str
        attempt: int
        errors: list[str]
        rule: str
        reason: str
        policy: dict[str, Any] | None = None  # the settings the rule applied

        def apply(self, goal: Goal) -> None:
            task = _task(goal, self)
            task.last_error = "; ".join(self.errors)
            task.reason = self.reason
            if task.status == "escalated":
                goal.state.set_outcome(task, None)  # a human's output was refused; it waits on

    class InputRejected(Event):
        """The input built from the bindings failed the agent's input contract."""

        task: str
        errors: list[str]
        rule: str
        reason: str

        def apply(self, goal: Goal) -> None:
            task = _task(goal, self)
            task.last_error = "; ".join(self.errors)
            task.reason = self.reason

    class RetryScheduled(Event):
        task: str
        attempt: int
        failure: str
        due_at: datetime
        delay_s: float
        rule: str
        reason: str
        policy: dict[str, Any] | None = None  # the settings the rule applied
        task_event: ClassVar[str | None] = "schedule_retry"

        def apply(self, goal: Goal) -> None:
            task = _move_task(goal, self)
            task.failures += 1
            task.due_at = self.due_at
            task.last_error = self.failure
            task.reason = self.reason
            _conclude_attempt(task, goal.state)

    class AttemptInterrupted(Event):
        """A crash left an attempt without an outcome; a safe task may be dispatched again."""

        task: str
        attempt: int
        rule: str
        reason: str
        policy: dict[str, Any] | None = None  # the settings the rule applied
        task_event: ClassVar[str | None] = "interrupt"

        def apply(self, goal: Goal) -> None:
            task = _move_task(goal, self)
            task.reason = self.reason
            _conclude_attempt(task, goal.state)

    class TaskFailed(Event):
        task: str
        error: str
        rule: str
        reason: str
        policy: dict[str, Any] | None = None  # the settings the rule applied
        task_event: ClassVar[str | None] = "fail"

        def apply(self, goal: Goal) -> None:
            _end_task(goal, self, error=self.error)

    class TaskEscalated(Event):
        """The task waits for a human (`baton resolve`)."""

        task: str
        rule: str
        reason: str
        policy: dict[str, Any] | None = None  # the settings the rule applied
        task_event: ClassVar[str | None] = "escalate"

        def apply(self, goal: Goal) -> None:
            _end_task(goal, self)
            goal.state.tasks[self.task].waiting_for = escalation_kind("TaskEscalated", self.rule)

    class TaskAbandoned(Event):
        task: str
        rule: str
        reason: str
        policy: dict[str, Any] | None = None  # the settings the rule applied
        task_event: ClassVar[str | None] = "abandon"

        def apply(self, goal: Goal) -> None:
            _end_task(goal, self)

    class TaskSkipped(Event):
        task: str
        because: str
        rule: str
        reason: str
        task_event: ClassVar[str | None] = "skip"

        def apply(self, goal: Goal) -> None:
            _end_task(goal, self)

    class TaskCancelled(Event):
        task: str
        rule: str
        reason: str
        task_event: ClassVar[str | None] = "cancel"

        def apply(self, goal: Goal) -> None:
            _end_task(goal, self)

    class BudgetExhausted(Event):
        """A goal-wide budget would be exceeded by the next attempt; no attempt starts."""

        budget: str  # attempts | tokens | cost_usd | deadline_s
        limit: float
        used: float
        rule: str
        reason: str
        task: str | None = None
        policy: dict[str, Any] | None = None  # the settings the rule applied

    # --- decomposition (baton.domain.expansion) ------------------------------------------------

    class PlanExtended(Event):
        """A planner's fragment passed every check `validate` makes: its tasks joined the goal
        as `<planner>/<id>`; the planner runs on as them until the last one ends.

        Version 2 adds `from_escalation`: under decision rules 4, a fragment a human supplied
        (`resolve --output`) to a planner escalated for want of one moves the planner from
        `escalated` to `running` (task event `join`), so that it runs as the fragment's tasks
        and joins them. Under rules 1-3 the planner stayed `escalated` (the goal waited on it
        and the fragment's tasks were never dispatched): every version 1 event, and every one
        of a goal decided under those rules, holds `False` and moves nothing."""

        task: str
        attempt: int
        fragment: dict[str, Any]
        added: list[str]
        checks: list[str]
        rule: str
        reason: str
        from_escalation: bool = False
        task_event: ClassVar[str | None] = "join"
        class_version: ClassVar[int] = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["from_escalation"] = False  # the planner stayed as it was

        @classmethod
        def task_events(cls, fields: dict[str, Any]) -> tuple[str, ...]:
            return ("join",) if fields.get("from_escalation") else ()

        def apply(self, goal: Goal) -> None:
            task = _move_task(goal, self)  # escalated -> running where `from_escalation`
            extend_with_fragment(goal.state, self.task, self.fragment)
            task.last_error = None
            task.reason = self.reason
            _conclude_attempt(task, goal.state)

    class MapExpanded(Event):
        """A map's list arrived with `width` elements: instances `<map>[i]` joined the goal."""

        task: str
        width: int
        rule: str
        reason: str
        task_event: ClassVar[str | None] = "expand"

        def apply(self, goal: Goal) -> None:
            task = _move_task(goal, self)
            extend_with_map(goal.state, self.task, self.width)
            task.reason = self.reason

    class MapCollected(Event):
        """Every instance of a map succeeded; the map's output is their outputs, in order."""

        task: str
        width: int
        rule: str
        reason: str
        task_event: ClassVar[str | None] = "succeed"

        def apply(self, goal: Goal) -> None:
            task = _task(goal, self)
            tasks = goal.state.tasks
            task.output = [tasks[f"{self.task}[{index}]"].output for index in range(self.width)]
            _move_task(goal, self)  # after the output: the move publishes it to dependants
            task.reason = self.reason

    # --- goal decisions -----------------------------------------------------------------------

    class GoalSuspended(Event):
        """Nothing can move without a human: the goal waits (exit code 3)."""

        waiting_on: list[str]
        rule: str
        reason: str
        goal_event: ClassVar[str | None] = "wait"

        def apply(self, goal: Goal) -> None:
            _move_goal(goal, self)
            goal.state.resume_requested = False

    class GoalResumed(Event):
        rule: str
        reason: str
        goal_event: ClassVar[str | None] = "resume"

        def apply(self, goal: Goal) -> None:
            _move_goal(goal, self)
            goal.state.resume_requested = False

    class GoalCompleted(Event):
        output: Any
        rule: str
        reason: str
        goal_event: ClassVar[str | None] = "complete"

        def apply(self, goal: Goal) -> None:
            _move_goal(goal, self)
            goal.state.output = self.output

    class GoalFailed(Event):
        rule: str
        reason: str
        task: str | None = None
        goal_event: ClassVar[str | None] = "fail"

        def apply(self, goal: Goal) -> None:
            _move_goal(goal, self)

    class GoalCancelled(Event):
        rule: str
        reason: str
        goal_event: ClassVar[str | None] = "cancel"

        def apply(self, goal: Goal) -> None:
            _move_goal(goal, self)

    # --- human gates (baton.domain.gates) ------------------------------------------------------

    class HumanAnswered(Event):
        """A human answered the question a task asked; the task runs again with the answer."""

        task: str
        answer: str
        by: str
        observation: ClassVar[bool] = True

        def apply(self, goal: Goal) -> None:
            task = _task(goal, self)
            goal.state.now = self.timestamp
            goal.state.resume_requested = False  # recorded by `answer`; a runner continues it
            goal.state.awaiting_runner = True
            asked = task.question or ""
            task.clarifications = [*task.clarifications, {"question": asked, "answer": self.answer}]
            task.question = None
            task.resolution = "answer"
            task.reason = self.by

    class ClarificationRequested(Event):
        """The agent asked a question instead of answering; the task waits for `baton answer`.
        The output is not forwarded."""

        task: str
        attempt: int
        question: str
        rule: str
        reason: str
        policy: dict[str, Any] | None = None  # the settings the rule applied
        task_event: ClassVar[str | None] = "escalate"

        def apply(self, goal: Goal) -> None:
            task = _move_task(goal, self)
            task.reason = self.reason
            task.waiting_for = "clarification"
            task.question = self.question
            _conclude_attempt(task, goal.state)

    class ApprovalRequested(Event):
        """A task with `approval: required` waits, before its first dispatch, for a human's
        `resolve --approve|--reject`; `input` is what that dispatch will send."""

        task: str
        input: Any
        input_digest: str
        rule: str
        reason: str
        task_event: ClassVar[str | None] = "escalate"

        def apply(self, goal: Goal) -> None:
            task = _move_task(goal, self)
            task.reason = self.reason
            task.waiting_for = "approval"

    # --- behaviour ----------------------------------------------------------------------------

    def __init__(
        self,
        plan: dict[str, Any],
        input: Any,
        concurrency: int,
        forked_from: str | None = None,
        forked_at: int | None = None,
        rules: int = 1,
    ) -> None:
        validated = _validated_plan(plan)
        started: datetime = self.created_on
        self.state = GoalState(
            goal_id=self.id,
            plan=validated,
            input=input,
            started_at=started,
            now=started,
            concurrency=concurrency,
            tasks={task_id: TaskState(task_id) for task_id in validated.order},
            forked_from=forked_from,
            rules=rules,
        )

    @classmethod
    def start(
        cls,
        *,
        goal_id: str,
        plan: Plan,
        goal_input: Any,
        concurrency: int,
        at: datetime,
        forked_from: str | None = None,
        forked_at: int | None = None,
        schemas: dict[str, Any] | None = None,
        rules: int = RULES,
    ) -> Goal:
        """A new goal's `Started` event. `rules`: today's decision rules, or the ones a recorded
        history was decided under (re-execution and what-if decide it again)."""
        return cls._create(
            cls.Started,
            id=goal_id,
            timestamp=at,
            plan=canonical_plan(plan),
            input=goal_input,
            concurrency=concurrency,
            forked_from=forked_from,
            forked_at=forked_at,
            schemas=schemas,
            rules=rules,
        )

    def observe(self, kind: str, *, at: datetime, **fields: Any) -> None:
        """Record an observation; `at` is when the adapter saw it (the domain reads no clock)."""
        self._trigger(OBSERVATION_KINDS[kind], at, fields)

    def record(self, decision: Decision) -> None:
        """Record a decision, refusing any status change its lifecycle does not allow."""
        event_class = DECISION_KINDS[decision.kind]
        fields = decision.fields  # built on each access: once here
        moves = event_class.task_events(fields)
        if moves:
            task = self.state.tasks[fields["task"]]
            status = task.status
            for move in moves:
                status = task_target(task.id, status, move)
        if event_class.goal_event is not None:
            goal_target(self.id, self.state.status, event_class.goal_event)
        self._trigger(event_class, self.state.now, fields)

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        """eventsourcing's `trigger_event`, building the event as `_trigger` does."""
        timestamp = kwargs.pop("timestamp", None)
        kwargs.pop("originator_id", None)  # imposed by the aggregate, as the library does
        kwargs.pop("originator_version", None)
        if timestamp is None:
            timestamp = event_class.create_timestamp()
        self._trigger(event_class, timestamp, kwargs)

    def _trigger(self, event_class: type[Any], timestamp: datetime, fields: dict[str, Any]) -> None:
        """The next event, applied and appended to the pending ones: what the library's
        `trigger_event` does, without copying the fields twice and with the event's attributes
        assigned as one dict rather than one frozen `__setattr__` each (`_new_event`); a
        decision's or observation's fields arrive here as the dict they were built in."""
        event = _new_event(event_class, self._id, self._version + 1, timestamp, fields)
        event.mutate(self)
        self._pending_events.append(event)

    def collect_events(self) -> list[Any]:
        """The pending events, handed over as they are (the library pops them one by one from
        the front of the list: quadratic in a 10,000-task map's save)."""
        collected, self._pending_events = self._pending_events, []
        return collected


# Per event class: its fields after the three every event has, each with its default (or
# MISSING), in declaration order: the order the dataclass `__init__` assigns them in, which is
# the order eventsourcing's mapper encodes them in (`vars(event)`).
_EventFields = tuple[tuple[str, Any], ...]
_EVENT_FIELDS: dict[type[Any], _EventFields | None] = {}
_HEAD = frozenset({"originator_id", "originator_version", "timestamp"})


def _event_fields(event_class: type[Any]) -> _EventFields | None:
    """The fields `_new_event` assigns, or None for a class it leaves to its `__init__` (a
    default factory, a `__post_init__`, or fields not headed by the three)."""
    fields = dataclasses.fields(event_class)
    if (
        tuple(f.name for f in fields[:3]) != ("originator_id", "originator_version", "timestamp")
        or hasattr(event_class, "__post_init__")
        or any(f.default_factory is not dataclasses.MISSING or not f.init for f in fields)
    ):
        return None
    return tuple((f.name, f.default) for f in fields[3:])


def _new_event(
    event_class: type[Any], goal_id: str, version: int, timestamp: datetime, given: dict[str, Any]
) -> Any:
    """`event_class(originator_id=.., originator_version=.., timestamp=.., **given)`: the same
    attributes in the same order, the same TypeError for a missing or unexpected field."""
    try:
        fields = _EVENT_FIELDS[event_class]
    except KeyError:
        fields = _EVENT_FIELDS[event_class] = _event_fields(event_class)
    if not _HEAD.isdisjoint(given):  # the aggregate's to set: `trigger_event(x=..., **f)` refused
        shared = sorted(_HEAD.intersection(given))
        raise TypeError(f"Can't construct event {event_class}: {shared} are the aggregate's")
    if fields is None:
        return _constructed(event_class, goal_id, version, timestamp, given)
    state: dict[str, Any] = {
        "originator_id": goal_id, "originator_version": version, "timestamp": timestamp
    }
    used = 0
    for name, default in fields:
        if name in given:
            state[name] = given[name]
            used += 1
        elif default is dataclasses.MISSING:
            return _constructed(event_class, goal_id, version, timestamp, given)  # its error
        else:
            state[name] = default
    if used != len(given):
        return _constructed(event_class, goal_id, version, timestamp, given)  # its error
    event = object.__new__(event_class)
    object.__setattr__(event, "__dict__", state)
    return event


def _constructed(
    event_class: type[Any], goal_id: str, version: int, timestamp: datetime, given: dict[str, Any]
) -> Any:
    """The event through its own `__init__`, with the library's message if that refuses."""
    try:
        return event_class(
            **{**given, "originator_id": goal_id, "originator_version": version,
               "timestamp": timestamp}
        )
    except TypeError as exc:
        raise TypeError(f"Can't construct event {event_class}: {exc}") from None


def canonical_plan(plan: Plan) -> dict[str, Any]:
    """The plan as `Started` records it: its JSON with every mapping's keys sorted, the form a
    run file writes, so the recorded plan, an export and a re-import are the same bytes. Nothing
    decided depends on key order (`Plan.deps` is in plan order); lists keep their order."""
    data: dict[str, Any] = json.loads(plan.canonical_json)  # dumped once per Plan, a fresh copy
    global _last_canonical
    _last_canonical = (data, plan)
    return data


# The last dict `canonical_plan` handed out, with its Plan: `Goal.start` records it and the
# `Started` event's fold validates it straight after, which then needs no dump to find its
# key. By identity, one attribute replaced at once (runners on several threads).
_last_canonical: tuple[Any, Plan | None] = (None, None)


def _validated_plan(data: dict[str, Any]) -> Plan:
    # Keyed by the JSON text; sorted, so one plan recorded in any key order is parsed once.
    last, plan = _last_canonical
    if data is last and plan is not None:
        return _plan_of(plan.fold_key)
    return _plan_of(plan_key(data))


@lru_cache(maxsize=16)
def _plan_of(text: str) -> Plan:
    """A Plan is immutable and a pure function of its text, so goals of one plan share one,
    with its derived views (deps, parsed bindings) computed once rather than per goal."""
    return Plan.model_validate(json.loads(text))


def _account(state: GoalState, task: TaskState, usage: dict[str, Any] | None) -> None:
    """Add reported usage to the task and the goal, releasing the attempt's reservation."""
    task.reserved = None
    _spend(state, task, usage)


def _spend(state: GoalState, task: TaskState, usage: dict[str, Any] | None) -> None:
    """Add reported usage to the task and the goal."""
    if usage:
        tokens = int(usage.get("tokens", 0) or 0)
        cost = float(usage.get("cost_usd", 0.0) or 0.0)
        task.used.tokens += tokens
        task.used.cost_usd += cost
        state.used.tokens += tokens
        state.used.cost_usd += cost


def _end_task(goal: Goal, event: Any, *, error: str | None = None) -> None:
    task = _move_task(goal, event)
    task.reason = event.reason
    if error is not None:
        task.last_error = error
    _conclude_attempt(task, goal.state)


def _move_goal(goal: Goal, event: Any) -> None:
    goal.state.status = goal_target(goal.id, goal.state.status, event.goal_event)
    goal.state.reason = event.reason


def _event_classes() -> list[type[GoalEvent]]:
    return [
        value
        for value in vars(Goal).values()
        if isinstance(value, type) and issubclass(value, GoalEvent) and value is not Goal.Event
    ]


OBSERVATION_KINDS: dict[str, type[GoalEvent]] = {
    cls.__name__: cls for cls in _event_classes() if cls.observation
}
DECISION_KINDS: dict[str, type[GoalEvent]] = {
    cls.__name__: cls for cls in _event_classes() if not cls.observation
}
