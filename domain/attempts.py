"""What an agent may learn about the attempt it is running (docs/llm.md, "Re-ask").

An agent that declares a keyword parameter `attempt` receives an `AttemptContext`: which attempt
this is and why the previous one was refused (validation errors, low confidence, the error it
raised). `decide` builds it when it dispatches and records it with the dispatch
(`TaskDispatched.attempt_context`), so the audit shows what the agent was told and re-execution
hands an agent exactly what the live run handed it. The LLM adapter turns `previous_errors` into
a re-ask.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from baton.domain.contracts import AgentContract
from baton.domain.state import GoalState, TaskState, Usage

__all__ = ["AttemptContext", "attempt_context", "context_for", "cost_left"]


class AttemptContext(BaseModel):
    model_config = ConfigDict(frozen=True)

    number: int
    previous_errors: list[str] = []
    # What the goal's `max_tokens` leaves for this attempt when it starts (None: no cap). An
    # agent making several model requests stops before the one that would pass it.
    tokens_left: int | None = None


def attempt_context(
    state: GoalState, task_id: str, number: int, *, held: int = 0
) -> AttemptContext:
    """The context of attempt `number` of a task, from the goal's state when it is dispatched:
    the previous rejection (none for the first attempt) and the tokens the budget leaves it.
    `held`: tokens reserved by dispatches decided in the same batch but not yet recorded."""
    task = state.tasks[task_id]
    errors = [task.last_error] if number > 1 and task.last_error else []
    return AttemptContext(
        number=number, previous_errors=errors, tokens_left=_tokens_left(state, task_id, held)
    )


def context_for(
    contract: AgentContract, state: GoalState, task_id: str, number: int
) -> BaseModel | None:
    """What an agent that declares `attempt` is handed (None when it declares none), in the
    model it annotated the parameter with; live runs and re-execution both call this."""
    if not contract.takes_attempt:
        return None
    task = state.tasks[task_id]
    recorded = task.attempt_context if task.attempts == number else None
    if recorded is None:  # dispatched before Baton recorded the context: derived as it was then
        recorded = attempt_context(state, task_id, number).model_dump(mode="json")
    return (contract.attempt_model or AttemptContext).model_validate(recorded)


def _tokens_left(state: GoalState, task_id: str, held: int) -> int | None:
    """The cap, less what was spent and what other running attempts hold in reservation."""
    cap = state.plan.budget.max_tokens
    task = state.tasks[task_id]
    if cap is None or (state.rules >= 6 and task.granted_attempts > 0):
        return None  # no cap, or (rules 6) a human allowed this attempt beyond the budget
    return max(0, cap - state.used.tokens - held - _held_by_others(state, task).tokens)


def cost_left(state: GoalState, task_id: str) -> float | None:
    """What the goal's `max_cost_usd` leaves a running attempt of this task: the cap, less what
    was spent and what other running attempts hold in reservation (None: no cap).

    Not part of the recorded `AttemptContext` (that would change what goals decided under the
    current rules record): the runner hands it to the call (baton.runtime.spending), and an LLM
    agent stops sending requests once its cost reaches it."""
    cap = state.plan.budget.max_cost_usd
    task = state.tasks[task_id]
    if cap is None or task.granted_attempt == task.in_flight:
        return None  # no cap, or a human allowed this attempt beyond the exhausted budget
    held = _held_by_others(state, task).cost_usd
    return max(0.0, round(cap - state.used.cost_usd - held, 9))


def _held_by_others(state: GoalState, task: TaskState) -> Usage:
    """What the goal's other running attempts hold in reservation (their estimates)."""
    own = task.reserved or Usage()
    return Usage(state.reserved.tokens - own.tokens, state.reserved.cost_usd - own.cost_usd)
