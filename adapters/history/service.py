"""Debugging a run from its events, shared by the CLI (`audit`, `replay`, `fork`, `export`,
`import`) and the Python API (`Baton.audit`, `.replay`, `.fork`, `.export_run`, `.import_run`).

A history is a stored goal or a run file (`GOAL|FILE`): a path to an existing file is read as a
run file, anything else is a goal id in the store. No agent is called here.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import IO, Any

from baton.domain.audit import timeline
from baton.domain.contracts import Contracts
from baton.domain.errors import PlanError
from baton.domain.goal import GoalEvent
from baton.domain.history import kind_of, started_event
from baton.domain.replay import ReplayResult, replay
from baton.domain.whatif import WhatIfResult, what_if
from baton.history.recorded import reexecute
from baton.history.runfile import RunFile, RunFileError, import_run, read_run, write_run
from baton.history.schemas import SchemaError, contracts_from_schemas
from baton.runtime.loading import LoadedPlan, prepare_plan
from baton.runtime.service import CommandError
from baton.store.eventstore import BatonStore, GoalNotFound

__all__ = [
    "History",
    "audit_history",
    "export_goal",
    "import_file",
    "load_history",
    "replay_contracts",
    "replay_history",
]

Target = str | os.PathLike[str]


class History:
    """The events of one goal, from the store or a run file, and where they came from."""

    def __init__(self, goal_id: str, events: list[GoalEvent], *, source: str) -> None:
        self.goal_id = goal_id
        self.events = events
        self.source = source  # the goal id or the file, as given

    def recorded_plan(self, *, calls_models: bool = False) -> LoadedPlan:
        """The goal's own plan with today's agents: their contracts re-judge recorded outputs.
        `calls_models` (re-execution calling today's agents): the LLM model settings must work."""
        return prepare_plan(started_event(self.events).plan, source=f"goal {self.goal_id} plan",
                            calls_models=calls_models, recorded=True)


def load_history(target: Target, store: Callable[[], BatonStore]) -> History:
    """GOAL|FILE: a run file's events when `target` is a file, else the stored goal's (the store
    is opened only then, so reading a run file needs none)."""
    source = _target(target, "a goal id or a run file path")
    if os.path.isfile(source):
        run = read_run(source)
        return History(run.goal_id, run.events, source=source)
    try:
        events = list(store().events(source))
    except GoalNotFound:
        if os.path.splitext(source)[1].lower() not in (".jsonl", ".json"):
            raise
        # A run file's name, misspelt: not a goal id the user meant.
        raise RunFileError(f"run file {source}: No such file or directory (and no goal "
                           f"{source!r} in this store)") from None
    return History(source, events, source=source)


def _target(target: object, expected: str) -> str:
    if not isinstance(target, str | os.PathLike):
        raise CommandError(f"{target!r}: expected {expected}, not {type(target).__name__}")
    return os.fspath(target)


def audit_history(history: History, *, task: str | None = None) -> dict[str, Any]:
    """The decision timeline (docs/reference.md, `audit --json`), or one task's part of it."""
    started = started_event(history.events)
    task_ids = [spec.get("id") for spec in started.plan.get("tasks", [])]
    if task is not None and task not in task_ids:
        added = _added_tasks(history)
        if task not in added:
            raise CommandError(f"--task {task}: goal {history.goal_id} has no such task "
                               f"({_listed([*map(str, task_ids), *added])})")
    return timeline(history.events, task=task)


def _added_tasks(history: History) -> list[str]:
    """The tasks the run added (a planner's fragments, a map's instances), in order."""
    added: list[str] = []
    for event in history.events:
        if kind_of(event) == "MapExpanded":
            fields = vars(event)
            added += [f"{fields['task']}[{index}]" for index in range(fields["width"])]
        else:
            added += getattr(event, "added", ())
    return added


def _listed(names: list[str], most: int = 12) -> str:
    """Names for a one-line message: the first `most`, then how many more."""
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"


def replay_contracts(history: History, *, no_code: bool = False) -> tuple[Contracts, str | None]:
    """The contracts replay judges with, and why the recorded schemas were used (None when they
    come from today's agent modules). `no_code` never imports a module the history names."""
    schemas = started_event(history.events).schemas
    if no_code:
        if schemas is None:
            raise CommandError(
                f"--no-code: goal {history.goal_id} records no contract schemas (it was run by a "
                "Baton before 0.2); replay it where its agent modules import, without --no-code"
            )
        return _from_schemas(schemas, history.goal_id), "--no-code: no module was imported"
    try:
        return history.recorded_plan().contracts, None
    except PlanError as exc:
        unloadable = _unloadable(exc)
        if schemas is None or not unloadable:
            raise
        because = f"agent modules not importable: {unloadable[0]}"
        return _from_schemas(schemas, history.goal_id), because


def _unloadable(exc: PlanError) -> list[str]:
    """The problems that are agent modules (or the input model) not importing: those plain
    replay gets past with the recorded schemas, and only those."""
    return [str(i) for i in exc.issues if i.where.startswith("agents.") or i.where == "input"]


def _from_schemas(schemas: dict[str, Any], goal_id: str) -> Contracts:
    try:
        return contracts_from_schemas(schemas)
    except SchemaError as exc:
        raise CommandError(f"goal {goal_id}: {exc}") from None


def _reexecution_plan(history: History) -> LoadedPlan:
    try:
        return history.recorded_plan()
    except PlanError as exc:
        if started_event(history.events).schemas is None or not _unloadable(exc):
            raise  # plain replay cannot get past it either: the plan's own error, as it says it
        first = str(exc.issues[0]) if exc.issues else str(exc)
        raise CommandError(
            f"--reexecute calls the agents' own contracts and needs their modules ({first}); "
            "plain `replay` checks against the schemas recorded in the run"
        ) from None


def replay_history(
    history: History,
    *,
    at: int | None = None,
    reexecute_agents: bool = False,
    plan: str | None = None,
    no_code: bool = False,
    agents: Any = None,
) -> ReplayResult | WhatIfResult:
    """Re-decide the recorded events with today's code: plainly (the state after event `at`),
    re-executing the pipeline with recorded agent outputs, or under a changed `plan` file.
    A plain replay sets `contracts_source` on its result: why recorded schemas were used, or
    None when today's modules were."""
    if at is not None and (reexecute_agents or plan):
        raise CommandError("--at applies to plain replay, not to --reexecute or --plan")
    if reexecute_agents and plan:
        raise CommandError("--reexecute and --plan are exclusive")
    if no_code and (reexecute_agents or plan):
        raise CommandError(
            "--no-code applies to plain replay: --reexecute and --plan import agent modules"
        )
    if plan:
        from baton.runtime.loading import load_plan_file

        changed = load_plan_file(plan)
        return what_if(history.events, changed.plan, changed.contracts)
    if reexecute_agents:
        # `agents`: who answers the calls (default: the recording; LiveAgents call them for real)
        return reexecute(history.events, _reexecution_plan(history), agents=agents)
    contracts, because = replay_contracts(history, no_code=no_code)
    return dataclasses.replace(replay(history.events, contracts, at=at), contracts_source=because)


def export_goal(store: BatonStore, goal_id: str, out: IO[str] | Target) -> int:
    """Write a goal's run file to `out`, an open text file or a path; returns how many events
    it holds. The events are read before a path is opened, so a goal id that is not in the
    store (or a store that fails) leaves a file already there as it was; it used to be emptied."""
    events = list(store.events(goal_id))
    if isinstance(out, str | os.PathLike):
        with open(out, "w", encoding="utf-8") as opened:
            write_run(events, opened)
    else:
        write_run(events, out)
    return len(events)


def import_file(path: Target, store: Callable[[], BatonStore]) -> RunFile:
    """Load a run file into the store under its own goal id: the file is read and checked
    before the store is opened, and nothing is stored from a file that fails a check."""
    run = read_run(_target(path, "a run file path"))
    import_run(store(), run)
    return run
