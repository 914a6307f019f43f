"""Baton's functional core: the plan, the Goal aggregate and its events, lifecycles and `decide`.

Imports only the standard library, pydantic, `eventsourcing.domain` and `statemachine`; no I/O,
no clock, no randomness.
"""

from baton.domain.contracts import AgentContract, Contracts
from baton.domain.decide import decide, settle
from baton.domain.decisions import Decision
from baton.domain.errors import BatonError, GoalInputError, IllegalTransition, PlanError, PlanIssue
from baton.domain.goal import DECISION_KINDS, OBSERVATION_KINDS, Goal
from baton.domain.lifecycle import GoalLifecycle, GoalStatus, TaskLifecycle, TaskStatus
from baton.domain.plan import Plan, TaskSpec, load_plan
from baton.domain.state import GoalState, TaskState

__all__ = [
    "DECISION_KINDS",
    "OBSERVATION_KINDS",
    "AgentContract",
    "BatonError",
    "Contracts",
    "Decision",
    "Goal",
    "GoalInputError",
    "GoalLifecycle",
    "GoalState",
    "GoalStatus",
    "IllegalTransition",
    "Plan",
    "PlanError",
    "PlanIssue",
    "TaskLifecycle",
    "TaskSpec",
    "TaskState",
    "TaskStatus",
    "decide",
    "load_plan",
    "settle",
]
