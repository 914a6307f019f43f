"""Task and goal lifecycles: the state machines are the single definition of every status change.

python-statemachine costs ~250 µs per instance and ~200 µs per `send()`, far too much to pay per
event on the hot path or during replay. So each machine class is read once, at import, into a
transition table `(status, event) -> status`; the aggregate checks that table before it records
an event, and event mutators only assign the target status the table gives. The machine classes
stay the documentation (`f"{TaskLifecycle:mermaid}"` draws them) and the tests check that the
tables agree with them.

`TaskStatus` and `GoalStatus` name the machines' states for the type checker; a `Literal` cannot
be computed, so it is written out and checked against the machine when this module is imported.
"""

from __future__ import annotations

from typing import Literal, cast, get_args

from statemachine import State, StateMachine

from baton.domain.errors import IllegalTransition

__all__ = [
    "GOAL_FINAL",
    "GOAL_OPEN",
    "GOAL_STATUSES",
    "GOAL_TRANSITIONS",
    "TASK_FINAL",
    "TASK_STATUSES",
    "TASK_TRANSITIONS",
    "GoalLifecycle",
    "GoalStatus",
    "TaskLifecycle",
    "TaskStatus",
    "goal_target",
    "task_target",
    "transition_table",
]


TaskStatus = Literal[
    "pending",
    "ready",
    "running",
    "retry_wait",
    "escalated",
    "succeeded",
    "failed",
    "abandoned",
    "skipped",
    "cancelled",
]
GoalStatus = Literal["running", "waiting", "completed", "failed", "cancelled"]


class TaskLifecycle(StateMachine):
    """pending → ready → running → succeeded, with the failure paths of docs/reference.md."""

    pending = State(initial=True)
    ready = State()
    running = State()
    retry_wait = State()
    escalated = State()
    succeeded = State(final=True)
    failed = State(final=True)
    abandoned = State(final=True)
    skipped = State(final=True)
    cancelled = State(final=True)

    # Inputs arrived, a backoff elapsed, or a human asked for another attempt.
    make_ready = pending.to(ready) | retry_wait.to(ready) | escalated.to(ready)
    dispatch = ready.to(running)
    succeed = running.to(succeeded) | escalated.to(succeeded)  # escalated: a human's output
    schedule_retry = running.to(retry_wait)
    # A crash left an attempt without an outcome; a safe task goes back to ready.
    interrupt = running.to(ready)
    fail = running.to(failed) | ready.to(failed) | retry_wait.to(failed)
    escalate = running.to(escalated) | ready.to(escalated) | retry_wait.to(escalated)
    abandon = running.to(abandoned) | ready.to(abandoned) | escalated.to(abandoned)
    skip = pending.to(skipped) | ready.to(skipped) | retry_wait.to(skipped) | escalated.to(skipped)
    cancel = (
        pending.to(cancelled)
        | ready.to(cancelled)
        | running.to(cancelled)
        | retry_wait.to(cancelled)
        | escalated.to(cancelled)
    )
    # A ready map runs as its instances (baton.domain.expansion); it is not dispatched itself.
    expand = ready.to(running)
    # A planner escalated for want of a fragment runs as the one a human supplied (rules 4).
    join = escalated.to(running)


class GoalLifecycle(StateMachine):
    """running ⇄ waiting (for a human) → completed | failed | cancelled."""

    running = State(initial=True)
    waiting = State()
    completed = State(final=True)
    failed = State(final=True)
    cancelled = State(final=True)

    wait = running.to(waiting)
    resume = waiting.to(running)
    complete = running.to(completed)
    fail = running.to(failed) | waiting.to(failed)
    cancel = running.to(cancelled) | waiting.to(cancelled)


def transition_table(machine: type[StateMachine]) -> dict[tuple[str, str], str]:
    """Read a machine class into `(source status, event) -> target status`."""
    table: dict[tuple[str, str], str] = {}
    for state in machine.states:
        for transition in state.transitions:
            for event in transition.events:
                table[(state.id, str(event.id))] = transition.target.id
    return table


def _statuses(machine: type[StateMachine], literal: object) -> tuple[str, ...]:
    """The members of a status `Literal`, refused unless they are exactly the machine's states."""
    members: tuple[str, ...] = get_args(literal)
    states = {state.id for state in machine.states}
    if set(members) != states:
        raise TypeError(
            f"the status Literal for {machine.__name__} lists {sorted(members)}, "
            f"its states are {sorted(states)}"
        )
    return members


TASK_STATUSES = cast(tuple[TaskStatus, ...], _statuses(TaskLifecycle, TaskStatus))
GOAL_STATUSES = cast(tuple[GoalStatus, ...], _statuses(GoalLifecycle, GoalStatus))
TASK_TRANSITIONS = cast(dict[tuple[TaskStatus, str], TaskStatus], transition_table(TaskLifecycle))
GOAL_TRANSITIONS = cast(dict[tuple[GoalStatus, str], GoalStatus], transition_table(GoalLifecycle))
TASK_FINAL = cast(frozenset[TaskStatus], frozenset(s.id for s in TaskLifecycle.states if s.final))
GOAL_FINAL = cast(frozenset[GoalStatus], frozenset(s.id for s in GoalLifecycle.states if s.final))
GOAL_OPEN: tuple[GoalStatus, ...] = tuple(s for s in GOAL_STATUSES if s not in GOAL_FINAL)


def task_target(task_id: str, status: TaskStatus, event: str) -> TaskStatus:
    """The status `event` moves task `task_id` to, or IllegalTransition."""
    try:
        return TASK_TRANSITIONS[(status, event)]
    except KeyError:
        raise IllegalTransition(
            lifecycle="task", subject=task_id, status=status, event=event
        ) from None


def goal_target(goal_id: str, status: GoalStatus, event: str) -> GoalStatus:
    """The status `event` moves goal `goal_id` to, or IllegalTransition."""
    try:
        return GOAL_TRANSITIONS[(status, event)]
    except KeyError:
        raise IllegalTransition(
            lifecycle="goal", subject=goal_id, status=status, event=event
        ) from None
