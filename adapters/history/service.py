"""Debugging a run from its events, shared by the CLI (`audit`, `replay`, `fork`, `export`,
`import`) and the Python API (`Baton.audit`, `.replay`, `.fork`, `.export_run`, `.import_run`).

A history is a stored goal or a run file (`GOAL|FILE`): a path to an existing file is read as a
run file, anything else is a goal id in the store. No agent is called here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import IO, Any

from baton.domain.audit import timeline
from baton.domain.goal import GoalEvent
from baton.domain.history import started_event
from baton.domain.replay import ReplayResult, replay
from baton.domain.whatif import WhatIfResult, what_if
from baton.history.recorded import reexecute
from baton.history.runfile import RunFile, import_run, read_run, write_run
from baton.runtime.loading import LoadedPlan, prepare_plan
from baton.runtime.service import CommandError
from baton.store.eventstore import BatonStore

__all__ = [
    "History",
    "audit_history",
    "export_goal",
    "import_file",
    "load_history",
    "replay_history",
]

Target = str | os.PathLike[str]


class History:
    """The events of one goal, from the store or a run file, and where they came from."""

    def __init__(self, goal_id: str, events: list[GoalEvent], *, source: str) -> None:
        self.goal_id = goal_id
        self.events = events
        self.source = source  # the goal id or the file, as given

    def recorded_plan(self) -> LoadedPlan:
        """The goal's own plan with today's agents: their contracts re-judge recorded outputs."""
        return prepare_plan(started_event(self.events).plan, source=f"goal {self.goal_id} plan")


def load_history(target: Target, store: Callable[[], BatonStore]) -> History:
    """GOAL|FILE: a run file's events when `target` is a file, else the stored goal's (the store
    is opened only then, so reading a run file needs none)."""
    source = os.fspath(target)
    if os.path.isfile(source):
        run = read_run(source)
        return History(run.goal_id, run.events, source=source)
    return History(source, list(store().events(source)), source=source)


def audit_history(history: History, *, task: str | None = None) -> dict[str, Any]:
    """The decision timeline (docs/reference.md, `audit --json`), or one task's part of it."""
    started = started_event(history.events)
    task_ids = [spec.get("id") for spec in started.plan.get("tasks", [])]
    if task is not None and task not in task_ids:
        known = ", ".join(str(tid) for tid in task_ids)
        raise CommandError(f"--task {task}: goal {history.goal_id} has no such task ({known})")
    return timeline(history.events, task=task)


def replay_history(
    history: History,
    *,
    at: int | None = None,
    reexecute_agents: bool = False,
    plan: str | None = None,
) -> ReplayResult | WhatIfResult:
    """Re-decide the recorded events with today's code: plainly (the state after event `at`),
    re-executing the pipeline with recorded agent outputs, or under a changed `plan` file."""
    if at is not None and (reexecute_agents or plan):
        raise CommandError("--at applies to plain replay, not to --reexecute or --plan")
    if reexecute_agents and plan:
        raise CommandError("--reexecute and --plan are exclusive")
    if plan:
        from baton.runtime.loading import load_plan_file

        changed = load_plan_file(plan)
        return what_if(history.events, changed.plan, changed.contracts)
    loaded = history.recorded_plan()
    if reexecute_agents:
        return reexecute(history.events, loaded)
    return replay(history.events, loaded.contracts, at=at)


def export_goal(store: BatonStore, goal_id: str, out: IO[str]) -> int:
    """Write a goal's run file to `out`; returns how many events it holds."""
    events = list(store.events(goal_id))
    write_run(events, out)
    return len(events)


def import_file(path: Target, store: Callable[[], BatonStore]) -> RunFile:
    """Load a run file into the store under its own goal id: the file is read and checked
    before the store is opened, and nothing is stored from a file that fails a check."""
    run = read_run(os.fspath(path))
    import_run(store(), run)
    return run
