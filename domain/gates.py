"""Human gates: a task that asks a question (clarification) or waits for approval
(docs/reference.md, "Clarification and approval").

Both are defined paths, not free-form loops. A task that asks, or whose plan entry says
`approval: required`, moves to `escalated` with what it waits for (`TaskState.waiting_for`) and the
question or built input recorded; a human's answer (`HumanAnswered`) or approval
(`HumanResolved` with `approve` / `reject`) is an observation that `decide` turns into the next
step. Pure: no I/O, no clock.
"""

from __future__ import annotations

from typing import Literal

from baton.domain.contracts import Contracts, build_input, digest
from baton.domain.decisions import ApprovalRequested, Decision, TaskAbandoned, TaskReady
from baton.domain.state import GoalState, Outcome, TaskState

__all__ = [
    "GATE_RESOLUTIONS",
    "EscalationKind",
    "approvals",
    "clarification_question",
    "escalation_kind",
    "gate_resolution",
]

# What an escalated task waits for: `escalations` shows it as `kind`, `TaskState.waiting_for`
# and the read models' `task_status.waiting_for` hold it.
EscalationKind = Literal[
    "failure", "low_confidence", "budget", "outcome_unknown", "clarification", "approval"
]
# A human's answer to a gate, as `TaskState.resolution` holds it until `decide` acts on it.
GATE_RESOLUTIONS = frozenset({"answer", "approve", "reject"})


def escalation_kind(event_kind: str, rule: str) -> EscalationKind:
    """Why a task waits for a human, from the decision that escalated it (kind and rule)."""
    if event_kind == "ClarificationRequested":
        return "clarification"
    if event_kind == "ApprovalRequested":
        return "approval"
    if rule == "validation.confidence":
        return "low_confidence"
    if rule.startswith("budget."):
        return "budget"
    if rule == "side_effects.unsafe":
        return "outcome_unknown"
    return "failure"


def clarification_question(outcome: Outcome) -> str | None:
    """The question an agent asked instead of answering: a non-empty string in its raw
    output's `clarification` field (the same kind of convention as `confidence`)."""
    if outcome.kind != "returned" or outcome.error is not None:
        return None
    raw = outcome.output
    question = raw.get("clarification") if isinstance(raw, dict) else None
    if isinstance(question, str) and question.strip():
        return question
    return None


def approvals(state: GoalState, contracts: Contracts) -> list[Decision]:
    """Ready tasks that need approval and have none: stop them before their first dispatch,
    with the input they would be sent. A task whose input does not build is left to `_dispatch`,
    which rejects it as it would any other."""
    gated = state.plan.approval_tasks
    if not gated or state.status != "running":
        return []
    decisions: list[Decision] = []
    for task_id in state.with_status("ready"):
        task = state.tasks[task_id]
        if task_id not in gated or task.approved:
            continue
        spec = state.plan.task_map[task_id]
        agent_input, _ = build_input(state, spec, contracts[spec.agent])
        if agent_input is None:
            continue
        shown = agent_input.model_dump(mode="json")
        decisions.append(
            ApprovalRequested(
                task=task_id,
                input=shown,
                input_digest=digest(shown),
                rule="approval.required",
                reason="approval: required; waits for resolve --approve or --reject before "
                "its first dispatch",
            )
        )
    return decisions


def gate_resolution(task: TaskState) -> Decision:
    """What a human's answer or approval decision makes of a task waiting at a gate."""
    if task.resolution == "reject":
        # Refused: the task is given up like an abandoned one, so its dependants are skipped
        # and the rest of the goal finishes (or fails, if the goal's output reads it).
        reason = f"approval refused by {task.reason}"
        return TaskAbandoned(task=task.id, rule="approval.refused", reason=reason)
    if task.resolution == "approve":
        reason = f"approved by {task.reason}"
        return TaskReady(task=task.id, inputs=[], rule="approval.granted", reason=reason)
    asked = len(task.clarifications)
    reason = f"answered by {task.reason}; runs again with {asked} answered question(s)"
    return TaskReady(task=task.id, inputs=[], rule="clarification.answered", reason=reason)

