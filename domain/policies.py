"""Retry and budget policies: pure functions of the plan, the state and recorded time."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from domain.plan import Budget, RetryPolicy, TaskSpec
from domain.state import GoalState, TaskState, Usage

__all__ = ["BudgetBreach", "backoff_delay", "budget_breach", "jitter_fraction"]


def jitter_fraction(goal_id: str, task_id: str, attempt: int) -> float:
    """A number in [0, 1) derived from goal, task and attempt: replay gets the same schedule."""
    digest = hashlib.sha256(f"{goal_id}/{task_id}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def backoff_delay(policy: RetryPolicy, *, failures: int, jitter: float) -> float:
    """Exponential backoff after the `failures`-th failure, capped, then jittered by ±jitter."""
    base = min(policy.max_backoff_s, policy.backoff_s * policy.multiplier ** (failures - 1))
    spread = policy.jitter * (2 * jitter - 1)  # in [-policy.jitter, +policy.jitter)
    return round(max(0.0, base * (1 + spread)), 6)


@dataclass(frozen=True)
class BudgetBreach:
    budget: str  # attempts | tokens | cost_usd | deadline_s
    limit: float
    used: float

    def describe(self) -> str:
        return f"{self.budget} budget exhausted: {self.used:g} used of {self.limit:g}"


def budget_breach(
    state: GoalState,
    task: TaskState,
    spec: TaskSpec,
    *,
    extra_attempts: int = 0,
    extra: Usage | None = None,
) -> BudgetBreach | None:
    """Would one more attempt of `task` break a goal-wide budget? Checked before it starts.

    Spend already reported plus the estimates reserved by running attempts plus this task's
    own estimate must stay within each cap. `extra_*` count dispatches decided in the same batch
    but not yet recorded.
    """
    budget: Budget = state.plan.budget
    if task.granted_attempts > 0:
        return None  # a human explicitly allowed this attempt
    if budget.deadline_s is not None:
        elapsed = (state.now - state.started_at).total_seconds()
        if elapsed >= budget.deadline_s:
            return BudgetBreach("deadline_s", budget.deadline_s, round(elapsed, 3))
    attempts = state.attempts_used + extra_attempts
    if budget.max_attempts is not None and attempts >= budget.max_attempts:
        return BudgetBreach("attempts", budget.max_attempts, attempts)
    reserved = state.reserved
    if extra is not None:
        reserved = Usage(reserved.tokens + extra.tokens, reserved.cost_usd + extra.cost_usd)
    estimate_tokens = spec.estimate.tokens if spec.estimate else 0
    estimate_cost = spec.estimate.cost_usd if spec.estimate else 0.0
    if budget.max_tokens is not None:
        would = state.used.tokens + reserved.tokens + estimate_tokens
        if would > budget.max_tokens or state.used.tokens >= budget.max_tokens:
            return BudgetBreach("tokens", budget.max_tokens, state.used.tokens + reserved.tokens)
    if budget.max_cost_usd is not None:
        would_cost = state.used.cost_usd + reserved.cost_usd + estimate_cost
        if would_cost > budget.max_cost_usd or state.used.cost_usd >= budget.max_cost_usd:
            used = round(state.used.cost_usd + reserved.cost_usd, 6)
            return BudgetBreach("cost_usd", budget.max_cost_usd, used)
    return None
