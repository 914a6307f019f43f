"""The lifecycles: the transition tables agree with the state machines, illegal moves raise."""

from __future__ import annotations

from typing import Literal, get_args

import pytest
from statemachine.exceptions import TransitionNotAllowed

from baton.domain import lifecycle
from baton.domain.errors import IllegalTransition
from baton.domain.lifecycle import (
    GOAL_TRANSITIONS,
    TASK_FINAL,
    TASK_TRANSITIONS,
    GoalLifecycle,
    GoalStatus,
    TaskLifecycle,
    TaskStatus,
    goal_target,
    task_target,
)
from baton.projections.schema import TASK_STATUSES as VIEW_TASK_STATUSES

TASK_STATUSES = [s.id for s in TaskLifecycle.states]
TASK_EVENTS = sorted({event for _, event in TASK_TRANSITIONS})
GOAL_STATUSES = [s.id for s in GoalLifecycle.states]
GOAL_EVENTS = sorted({event for _, event in GOAL_TRANSITIONS})


def test_statuses_are_the_contracts() -> None:
    assert set(TASK_STATUSES) == {
        "pending", "ready", "running", "retry_wait", "succeeded", "failed", "escalated",
        "abandoned", "skipped", "cancelled",
    }
    assert set(GOAL_STATUSES) == {"running", "waiting", "completed", "failed", "cancelled"}
    assert {"succeeded", "failed", "abandoned", "skipped", "cancelled"} == TASK_FINAL


def test_the_status_literals_are_the_machines_states() -> None:
    assert set(get_args(TaskStatus)) == set(TASK_STATUSES) == set(VIEW_TASK_STATUSES)
    assert len(get_args(TaskStatus)) == len(VIEW_TASK_STATUSES)
    assert set(get_args(GoalStatus)) == set(GOAL_STATUSES)
    assert set(lifecycle.TASK_STATUSES) == set(TASK_STATUSES)
    assert set(lifecycle.GOAL_STATUSES) == set(GOAL_STATUSES)


def test_a_status_literal_that_drifts_from_its_machine_is_refused() -> None:
    drifted = Literal["running", "waiting", "completed", "failed", "canceled"]
    with pytest.raises(TypeError, match=r"'canceled'.*'cancelled'"):
        lifecycle._statuses(GoalLifecycle, drifted)


@pytest.mark.parametrize("status", TASK_STATUSES)
@pytest.mark.parametrize("event", TASK_EVENTS)
def test_task_table_matches_the_machine(status: str, event: str) -> None:
    machine = TaskLifecycle(start_value=status)
    if (status, event) in TASK_TRANSITIONS:
        machine.send(event)
        assert task_target("t", status, event) == machine.current_state_value
    else:
        with pytest.raises(TransitionNotAllowed):
            machine.send(event)
        with pytest.raises(IllegalTransition) as info:
            task_target("t", status, event)
        assert info.value.status == status and info.value.event == event


@pytest.mark.parametrize("status", GOAL_STATUSES)
@pytest.mark.parametrize("event", GOAL_EVENTS)
def test_goal_table_matches_the_machine(status: str, event: str) -> None:
    machine = GoalLifecycle(start_value=status)
    if (status, event) in GOAL_TRANSITIONS:
        machine.send(event)
        assert goal_target("g", status, event) == machine.current_state_value
    else:
        with pytest.raises(TransitionNotAllowed):
            machine.send(event)
        with pytest.raises(IllegalTransition):
            goal_target("g", status, event)


def test_the_happy_path_and_some_illegal_moves() -> None:
    status = "pending"
    for event in ("make_ready", "dispatch", "succeed"):
        status = task_target("t", status, event)
    assert status == "succeeded"
    for status, event in [
        ("pending", "dispatch"),  # inputs first
        ("succeeded", "make_ready"),  # a finished task never runs again
        ("skipped", "dispatch"),
        ("running", "make_ready"),
        ("failed", "succeed"),
    ]:
        with pytest.raises(IllegalTransition, match=f"from status '{status}'"):
            task_target("t", status, event)
    with pytest.raises(IllegalTransition):
        goal_target("g", "completed", "fail")


def test_the_machines_draw_themselves() -> None:
    diagram = f"{TaskLifecycle:mermaid}"
    assert "retry_wait --> ready" in diagram
