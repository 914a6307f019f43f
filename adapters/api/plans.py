"""`baton.load_plan`: a plan from a file, a dict or a pydantic model, checked as `validate` does."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from baton.domain.errors import PlanError, PlanIssue
from baton.domain.plan import Plan
from baton.runtime.loading import AgentRef, LoadedPlan, prepare_plan, read_plan_data

__all__ = ["PlanSource", "load_plan"]

# A plan file (YAML or JSON), the plan as a dict, or a pydantic model that dumps to one.
PlanSource = str | os.PathLike[str] | Mapping[str, Any] | BaseModel


def load_plan(
    plan: PlanSource | LoadedPlan, agents: Mapping[str, AgentRef] | None = None
) -> LoadedPlan:
    """Load and check a plan before anything runs (every problem at once, in a `PlanError`).

    `plan` is a path to a YAML/JSON plan file, a dict in the plan file's shape, or a pydantic
    model (`baton.Plan`, or any model that dumps to that shape). `agents` maps agent names to
    callables (or `module:callable` strings); it adds to or replaces the plan's own `agents:`,
    and together they are the allowlist, checked like every other agent: contracts read from
    the signatures, every binding checked against them. A callable must import back by its
    `module:qualname` (a top-level function), because that path is what the goal records and
    what `resume` imports, in this process or another.
    """
    if agents is not None and not isinstance(agents, Mapping):
        raise PlanError([PlanIssue("agents", f"expected a mapping of agent names to callables, "
                                   f"not {type(agents).__name__}")])
    if isinstance(plan, LoadedPlan):
        if agents:
            raise PlanError([PlanIssue("agents", "the plan is loaded already: pass agents to "
                                       "load_plan together with its data")])
        return plan
    if isinstance(plan, str | os.PathLike):
        path = os.fspath(plan)
        return prepare_plan(read_plan_data(path), source=path, agents=agents)
    if isinstance(plan, Plan):
        data = plan.model_dump(mode="json", exclude_unset=True, by_alias=True)
    elif isinstance(plan, BaseModel):
        data = plan.model_dump(mode="json")
    elif isinstance(plan, Mapping):
        data = dict(plan)
    else:
        issue = PlanIssue("plan", f"expected a file path, a dict or a pydantic model, not "
                                  f"{type(plan).__name__}")
        raise PlanError([issue])
    return prepare_plan(data, agents=agents)
