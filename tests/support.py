"""Helpers for building plans and running goals in tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from baton.domain.goal import Goal
from baton.projections.schema import TABLES
from baton.readmodels.reading import ReadModels, read
from baton.runtime.loading import LoadedPlan, prepare_plan
from baton.runtime.service import start_goal
from baton.store.eventstore import BatonStore

AGENTS = "tests.agents"
T = TypeVar("T")


def plan(*tasks: dict[str, Any], agents: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A plan dict whose allowlist holds every agent the tasks name (all from tests.agents)."""
    names = agents or sorted({task["agent"] for task in tasks})
    return {
        "version": 1,
        "name": extra.pop("name", "test-plan"),
        "agents": {name: f"{AGENTS}:{name}" for name in names},
        "tasks": list(tasks),
        **extra,
    }


def task(task_id: str, agent: str, **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "agent": agent, **fields}


def load(data: dict[str, Any]) -> LoadedPlan:
    return prepare_plan(data)


def run(
    store: BatonStore, data: dict[str, Any], goal_input: Any = None, **kwargs: Any
) -> Goal:
    return start_goal(store, load(data), goal_input if goal_input is not None else {}, **kwargs)


def kinds(store: BatonStore, goal_id: str) -> list[str]:
    return [type(event).__name__ for event in store.events(goal_id)]


def events_of(store: BatonStore, goal_id: str, kind: str) -> list[Any]:
    return [e for e in store.events(goal_id) if type(e).__name__ == kind]


def projected(store: BatonStore, query: Callable[[ReadModels], T]) -> T:
    """One query against the store's read models, e.g. `projected(store, ReadModels.state)`."""
    with read(store) as models:
        return query(models)


def view_tables(store: BatonStore) -> dict[str, list[dict[str, Any]]]:
    """Every row of every read-model table: what two states of the views are compared by."""
    return projected(store, lambda models: {t.name: models.views.rows(t) for t in TABLES})


def plan_file(tmp_path: Path, data: dict[str, Any]) -> str:
    """`data` written as a plan file (JSON, which is YAML too); its path, for the CLI."""
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    return str(path)


def as_recorded_before(
    store: BatonStore, event: Any, change: Callable[[dict[str, Any]], None]
) -> Any:
    """`event` as an older release stored it (`change` edits its encoded state: the class
    version, fields it lacked), decoded back through the store's mapper: what the upcasters
    make of it."""
    from eventsourcing.persistence import StoredEvent

    mapper = store.app.mapper
    stored = mapper.to_stored_event(event)
    state = mapper.transcoder.decode(stored.state)
    change(state)
    old = StoredEvent(stored.originator_id, stored.originator_version, stored.topic,
                      mapper.transcoder.encode(state))
    return mapper.to_domain_event(old)
