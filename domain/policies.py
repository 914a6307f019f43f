"""Retry and budget policies: pure functions of the plan, the state and recorded time."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from baton.domain.plan import Budget, RetryPolicy, TaskSpec
from baton.domain.state import GoalState, TaskState, Usage

__all__ = [
    "BudgetBreach",
    "backoff_delay",
    "budget_breach",
    "fits_reservations",
    "jitter_fraction",
]


def jitter_fraction(goal_id: str, task_id: str, attempt: int) -> float:
    """A number in [0, 1) derived from goal, task and attempt: replay gets the same schedule."""
    digest = hashlib.sha256(f"{goal_id}/{task_id}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def backoff_delay(policy: RetryPolicy, *, failures: int, jitter: float) -> float:
    """Exponential backoff after the `failures`-th failure, capped, then jittered by ±jitter."""
    growth = _growth(policy.multiplier, failures - 1)
    # 0 * inf is NaN, which min() would turn into max_backoff_s: no backoff stays no backoff.
    base = 0.0 if policy.backoff_s == 0 else min(policy.max_backoff_s, policy.backoff_s * growth)
    spread = policy.jitter * (2 * jitter - 1)  # in [-policy.jitter, +policy.jitter)
    return round(max(0.0, base * (1 + spread)), 6)


def _growth(multiplier: float, steps: int) -> float:
    """multiplier ** steps, infinite past the largest float: a long retry policy (2.0 ** 1024
    raises OverflowError) is capped by max_backoff_s like any other long delay."""
    try:
        return multiplier**steps
    except OverflowError:
        return math.inf


@dataclass(frozen=True)
class BudgetBreach:
    budget: str  # attempts | tokens | cost_usd | deadline_s
    limit: float
    used: float
    estimate: float | None = None  # set: the next attempt's estimate is what would pass it

    def describe(self) -> str:
        said = f"{self.budget} budget exhausted: {self.used:g} used of {self.limit:g}"
        if self.estimate is None:
            return said
        return f"{said}, and the next attempt's estimate ({self.estimate:g}) would pass it"


def budget_breach(
    state: GoalState, task: TaskState, spec: TaskSpec, *, extra_attempts: int = 0
) -> BudgetBreach | None:
    """Would one more attempt of `task` break a goal-wide budget? Checked before it starts.

    Spend already reported plus this task's own estimate must stay within each cap;
    `extra_attempts` counts dispatches decided in the same batch but not yet recorded.
    Estimates held by running attempts are not counted here (see `fits_reservations`): they may
    still come back lower, so they make a task wait, never exhaust the budget.
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
    estimate = spec.estimate
    if budget.max_tokens is not None:
        tokens = state.used.tokens
        if tokens >= budget.max_tokens:
            return BudgetBreach("tokens", budget.max_tokens, tokens)
        if estimate is not None and tokens + estimate.tokens > budget.max_tokens:
            said = estimate.tokens if state.rules >= 5 else None
            return BudgetBreach("tokens", budget.max_tokens, tokens, said)
    if budget.max_cost_usd is not None:
        cost = round(state.used.cost_usd, 9)
        if cost >= budget.max_cost_usd:
            return BudgetBreach("cost_usd", budget.max_cost_usd, cost)
        if estimate is not None and cost + estimate.cost_usd > budget.max_cost_usd:
            said_cost = estimate.cost_usd if state.rules >= 5 else None
            return BudgetBreach("cost_usd", budget.max_cost_usd, cost, said_cost)
    return None


def fits_reservations(state: GoalState, spec: TaskSpec, extra: Usage) -> bool:
    """Does this task's estimate fit beside the estimates running attempts hold?"""
    if spec.estimate is None:
        return True
    budget = state.plan.budget
    reserved = state.reserved
    if budget.max_tokens is not None:
        held = state.used.tokens + reserved.tokens + extra.tokens
        if held + spec.estimate.tokens > budget.max_tokens:
            return False
    if budget.max_cost_usd is not None:
        held_cost = state.used.cost_usd + reserved.cost_usd + extra.cost_usd
        if held_cost + spec.estimate.cost_usd > budget.max_cost_usd:
            return False
    return True
