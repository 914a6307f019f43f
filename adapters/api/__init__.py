"""The Python API (docs/reference.md, "Python API"), re-exported by `baton` itself."""

from baton.api.aio import AsyncBaton
from baton.api.client import Baton, ReadModelsBehind
from baton.api.plans import load_plan
from baton.api.results import GoalResult, GoalSummary, TaskResult

__all__ = [
    "AsyncBaton",
    "Baton",
    "GoalResult",
    "GoalSummary",
    "ReadModelsBehind",
    "TaskResult",
    "load_plan",
]
