"""The application service: the commands behind the CLI, each load → decide → save.

Kept thin on purpose: every rule lives in `baton.domain.decide`; this module only wires the store,
the loaded plan and the runner together and records observations from the outside world.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError

from baton.domain.contracts import judge_output, validation_errors
from baton.domain.decide import settle
from baton.domain.errors import BatonError
from baton.domain.goal import Goal
from baton.domain.lifecycle import GOAL_FINAL
from baton.runtime.loading import LoadedPlan, prepare_plan
from baton.runtime.observers import RunObserver
from baton.runtime.runner import DEFAULT_CONCURRENCY, Runner, utc_now
from baton.store.eventstore import BatonStore

__all__ = [
    "CommandError",
    "cancel_goal",
    "load_goal_plan",
    "resolve_task",
    "resume_goal",
    "start_goal",
    "submit_goal",
]


class CommandError(BatonError):
    """A command that does not apply to the goal as it stands (e.g. resolving a running task)."""


def new_goal_id() -> str:
    return str(uuid.uuid4())


def start_goal(
    store: BatonStore,
    loaded: LoadedPlan,
    goal_input: Any,
    *,
    goal_id: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    runner: Runner | None = None,
    observer: RunObserver | None = None,
) -> Goal:
    """Validate the input, store the new goal, and drive it; nothing is stored on bad input."""
    validated = loaded.validate_input(goal_input)
    goal_id = goal_id or new_goal_id()
    if store.exists(goal_id):
        raise CommandError(f"goal {goal_id!r} already exists in this store (use resume)")
    runner = runner or Runner.from_settings(store=store, loaded=loaded, observer=observer)
    goal = Goal.start(
        goal_id=goal_id,
        plan=loaded.plan,
        goal_input=validated,
        concurrency=concurrency,
        at=runner.clock(),
    )
    return runner.start(goal)


def submit_goal(
    store: BatonStore,
    loaded: LoadedPlan,
    goal_input: Any,
    *,
    goal_id: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> Goal:
    """Validate the input and store the new goal without driving it (a worker or `resume` will).

    Only `Started` is recorded: no decision is taken here, so no dispatch can be stored for an
    agent call that nobody is about to make.
    """
    validated = loaded.validate_input(goal_input)
    goal_id = goal_id or new_goal_id()
    if store.exists(goal_id):
        raise CommandError(f"goal {goal_id!r} already exists in this store")
    goal = Goal.start(
        goal_id=goal_id,
        plan=loaded.plan,
        goal_input=validated,
        concurrency=concurrency,
        at=utc_now(),
    )
    store.save(goal)
    return goal


def load_goal_plan(goal: Goal) -> LoadedPlan:
    """The goal's own recorded plan, with its agents imported again from today's code."""
    data = goal.state.plan.model_dump(mode="json", exclude_unset=True)
    return prepare_plan(data, source=f"goal {goal.id} plan")


def resume_goal(
    store: BatonStore,
    goal_id: str,
    *,
    concurrency: int | None = None,
    runner: Runner | None = None,
    observer: RunObserver | None = None,
) -> Goal:
    goal = store.get(goal_id)
    if goal.state.status in GOAL_FINAL:
        return goal
    runner = runner or Runner.from_settings(
        store=store, loaded=load_goal_plan(goal), observer=observer
    )
    return runner.resume(goal, concurrency=concurrency or goal.state.concurrency)


def resolve_task(
    store: BatonStore,
    goal_id: str,
    task_id: str,
    *,
    action: str,
    reason: str,
    by: str,
    output: Any = None,
) -> Goal:
    """Record a human's decision on an escalated task, and what the orchestrator makes of it."""
    goal = store.get(goal_id)
    task = goal.state.tasks.get(task_id)
    if task is None:
        raise CommandError(f"goal {goal_id}: no task {task_id!r}")
    if task.status != "escalated":
        raise CommandError(f"goal {goal_id}: task {task_id!r} is {task.status}, not escalated")
    loaded = load_goal_plan(goal)
    if action == "output":
        spec = loaded.plan.task_map[task_id]
        contract = loaded.contracts[spec.agent]
        try:
            output = contract.output_model.model_validate(output).model_dump(mode="json")
        except ValidationError as exc:
            errors = "; ".join(validation_errors(exc, limit=5))
            raise CommandError(
                f"--output does not satisfy {contract.output_model.__name__}: {errors}"
            ) from None
        verdict = judge_output(output, contract, min_confidence=None)
        assert verdict.accepted
    goal.observe(
        "HumanResolved", at=utc_now(), task=task_id, action=action, reason=reason, by=by,
        output=output,
    )
    settle(goal, loaded.contracts)
    store.save(goal)
    return goal


def cancel_goal(store: BatonStore, goal_id: str, *, reason: str, by: str) -> Goal:
    goal = store.get(goal_id)
    if goal.state.status in GOAL_FINAL:
        raise CommandError(f"goal {goal_id} has already ended ({goal.state.status})")
    loaded = load_goal_plan(goal)
    goal.observe("CancelRequested", at=utc_now(), reason=reason, by=by)
    settle(goal, loaded.contracts)
    store.save(goal)
    return goal
