"""Decisions: what `decide` returns and `Goal.record` records, one typed class per decision kind.

Each class mirrors, field for field, the payload of the `Goal` event of the same name
(`baton.domain.goal`), so that mypy (strict on the domain) rejects a misspelt or missing field
where the decision is made instead of `Goal.record` failing at run time; tests/test_decisions.py
checks that the two sides agree. The event classes, and so the topics and payloads of stored
histories, are not touched: a decision is not an event, it becomes one when recorded.

Every decision carries `rule` (a stable id of the rule that made it, e.g. `retry.backoff`) and
`reason` (a sentence for the audit trail); a `TaskDecision` also carries the `task` it concerns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any, ClassVar

__all__ = [
    "DECISION_TYPES",
    "GOAL_ENDINGS",
    "ApprovalRequested",
    "AttemptInterrupted",
    "BudgetExhausted",
    "ClarificationRequested",
    "Decision",
    "GoalCancelled",
    "GoalCompleted",
    "GoalFailed",
    "GoalResumed",
    "GoalSuspended",
    "InputRejected",
    "MapCollected",
    "MapExpanded",
    "OutputAccepted",
    "OutputRejected",
    "PlanExtended",
    "RetryScheduled",
    "TaskAbandoned",
    "TaskCancelled",
    "TaskDecision",
    "TaskDispatched",
    "TaskEscalated",
    "TaskFailed",
    "TaskReady",
    "TaskSkipped",
    "decision_of",
]

# Every class is `@dataclass(kw_only=True, slots=True)`: keyword-only so that a call site names
# every field, slots so that building one stays cheap. Not `frozen`: a frozen dataclass assigns
# each field through `object.__setattr__`, which made building a decision 2-3x slower on the path
# `settle` and replay take per decision; a decision is built, recorded and dropped, and nothing
# assigns to one.


@dataclass(kw_only=True, slots=True)
class Decision:
    """Base of every decision. `kind` names the `Goal` event class it is recorded as.

    `prepared` is never recorded nor compared: a dispatch carries the validated agent input
    `decide` built for its digest, so the runner need not build it again.
    """

    rule: str
    reason: str
    prepared: Any = field(default=None, compare=False, repr=False)

    # The recorded fields, in declaration order, and a getter of their values (every decision
    # has at least `rule` and `reason`, so it returns a tuple); set below for every class.
    payload_names: ClassVar[tuple[str, ...]] = ()
    _payload_values: ClassVar[Callable[[Any], tuple[Any, ...]]]

    @property
    def kind(self) -> str:
        return type(self).__name__

    @property
    def fields(self) -> dict[str, Any]:
        """Exactly the payload of the event this decision is recorded as."""
        # Runs once per recorded decision: attrgetter and zip beat a comprehension of getattr.
        return dict(zip(self.payload_names, type(self)._payload_values(self), strict=True))


@dataclass(kw_only=True, slots=True)
class TaskDecision(Decision):
    """A decision about one task of the plan."""

    task: str


# --- task decisions -----------------------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class TaskReady(TaskDecision):
    inputs: list[str]


@dataclass(kw_only=True, slots=True)
class TaskDispatched(TaskDecision):
    attempt: int
    input_digest: str
    idempotency_key: str
    reserved: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None
    attempt_context: dict[str, Any] | None = None  # what an agent declaring `attempt` is told
    ready: dict[str, Any] | None = None  # rules 3: the readiness decided with it (goal.py)


@dataclass(kw_only=True, slots=True)
class OutputAccepted(TaskDecision):
    attempt: int
    output: Any = None  # set only where validation normalised the raw output


@dataclass(kw_only=True, slots=True)
class OutputRejected(TaskDecision):
    attempt: int
    errors: list[str]
    policy: dict[str, Any] | None = None


@dataclass(kw_only=True, slots=True)
class InputRejected(TaskDecision):
    errors: list[str]


@dataclass(kw_only=True, slots=True)
class RetryScheduled(TaskDecision):
    attempt: int
    failure: str
    due_at: datetime
    delay_s: float
    policy: dict[str, Any] | None = None


@dataclass(kw_only=True, slots=True)
class AttemptInterrupted(TaskDecision):
    attempt: int
    policy: dict[str, Any] | None = None


@dataclass(kw_only=True, slots=True)
class TaskFailed(TaskDecision):
    error: str
    policy: dict[str, Any] | None = None


@dataclass(kw_only=True, slots=True)
class TaskEscalated(TaskDecision):
    policy: dict[str, Any] | None = None


@dataclass(kw_only=True, slots=True)
class TaskAbandoned(TaskDecision):
    policy: dict[str, Any] | None = None


@dataclass(kw_only=True, slots=True)
class TaskSkipped(TaskDecision):
    because: str


@dataclass(kw_only=True, slots=True)
class TaskCancelled(TaskDecision):
    pass


@dataclass(kw_only=True, slots=True)
class BudgetExhausted(Decision):
    budget: str  # attempts | tokens | cost_usd | deadline_s
    limit: float
    used: float
    task: str | None = None  # the task that was not started
    policy: dict[str, Any] | None = None


# --- human gates (baton.domain.gates) ------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class ClarificationRequested(TaskDecision):
    attempt: int
    question: str
    policy: dict[str, Any] | None = None


@dataclass(kw_only=True, slots=True)
class ApprovalRequested(TaskDecision):
    input: Any  # the input the first dispatch will send, shown to whoever approves
    input_digest: str
# --- decomposition (baton.domain.expansion) -----------------------------------------------------


@dataclass(kw_only=True, slots=True)
class PlanExtended(TaskDecision):
    """A planner's fragment passed every check; its tasks join the goal."""

    attempt: int
    fragment: dict[str, Any]  # {"tasks": [...], "output": ...} as the agent returned it
    added: list[str]  # the new tasks' ids, `<planner>/<id>`
    checks: list[str]  # what it passed
    from_escalation: bool = False  # rules 4: the planner was escalated, it runs on as them


@dataclass(kw_only=True, slots=True)
class MapExpanded(TaskDecision):
    """A map's list arrived: one instance per element, `<map>[0]` .. `<map>[width-1]`."""

    width: int


@dataclass(kw_only=True, slots=True)
class MapCollected(TaskDecision):
    """Every instance of a map succeeded: its output is their outputs, in element order."""

    width: int


# --- goal decisions -----------------------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class GoalSuspended(Decision):
    waiting_on: list[str]


@dataclass(kw_only=True, slots=True)
class GoalResumed(Decision):
    pass


@dataclass(kw_only=True, slots=True)
class GoalCompleted(Decision):
    output: Any


@dataclass(kw_only=True, slots=True)
class GoalFailed(Decision):
    task: str | None = None  # the task whose failure ended it


@dataclass(kw_only=True, slots=True)
class GoalCancelled(Decision):
    pass


DECISION_TYPES: dict[str, type[Decision]] = {
    cls.__name__: cls
    for cls in (
        TaskReady,
        TaskDispatched,
        OutputAccepted,
        OutputRejected,
        InputRejected,
        RetryScheduled,
        AttemptInterrupted,
        TaskFailed,
        TaskEscalated,
        TaskAbandoned,
        TaskSkipped,
        TaskCancelled,
        BudgetExhausted,
        GoalSuspended,
        GoalResumed,
        GoalCompleted,
        GoalFailed,
        GoalCancelled,
        ClarificationRequested,
        ApprovalRequested,
        PlanExtended,
        MapExpanded,
        MapCollected,
    )
}
# The decisions that end a goal: its last decision. Only observations saved with it can follow
# (a late result in the same batch), so a reader of the latest event alone may, rarely, take an
# ended goal for a live one and look again. Matched by class name, which old topics name too
# (the runner's fence, the worker's look for a goal ended elsewhere, the read models).
GOAL_ENDINGS = frozenset(cls.__name__ for cls in (GoalCompleted, GoalFailed, GoalCancelled))

for _cls in DECISION_TYPES.values():
    _cls.payload_names = tuple(f.name for f in dataclasses.fields(_cls) if f.name != "prepared")
    _cls._payload_values = attrgetter(*_cls.payload_names)


def decision_of(kind: str, fields: Mapping[str, Any]) -> Decision:
    """The decision a recorded event of `kind` with this payload was made from (for copies)."""
    return DECISION_TYPES[kind](**fields)
