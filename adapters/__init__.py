"""Baton: a thin, deterministic, event-sourced orchestrator for multi-agent LLM systems.

The public surface is this module's `__all__` (docs/reference.md, "Python API"); everything
else is private by name. In the repository this package is the `adapters/` folder; `domain/`
and `projections/` are mounted inside it as `baton.domain` and `baton.projections`.

    import baton

    plan = baton.load_plan("plan.yaml")                  # or a dict, agents={"name": callable}
    with baton.Baton("sqlite:///baton.db") as bt:
        result = bt.run(plan, {"origin": "LHR"})         # result.status, .output, .tasks[id]
"""

from importlib.metadata import PackageNotFoundError, version

from baton.api import (
    AsyncBaton,
    Baton,
    GoalResult,
    GoalSummary,
    ReadModelsBehind,
    TaskResult,
    load_plan,
)
from baton.domain.errors import BatonError, GoalOwned, InputError, PlanError, PlanIssue
from baton.domain.history import HistoryError
from baton.domain.plan import Plan, TaskSpec
from baton.domain.replay import ReplayResult
from baton.history.runfile import RunFileError
from baton.runtime.loading import LoadedPlan
from baton.runtime.service import CommandError
from baton.settings import SettingError
from baton.store.eventstore import GoalNotFound, StoreError

try:
    __version__ = version("baton")  # one place: pyproject.toml's [project].version
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AsyncBaton",
    "Baton",
    "BatonError",
    "CommandError",
    "GoalNotFound",
    "GoalOwned",
    "GoalResult",
    "GoalSummary",
    "HistoryError",
    "InputError",
    "LoadedPlan",
    "Plan",
    "PlanError",
    "PlanIssue",
    "ReadModelsBehind",
    "ReplayResult",
    "RunFileError",
    "SettingError",
    "StoreError",
    "TaskResult",
    "TaskSpec",
    "__version__",
    "load_plan",
]
