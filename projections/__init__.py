"""Read models derived from the event log, exactly once: goal_summary, task_status, agent_stats.

Imports `domain` and eventsourcing only; the adapters open a store and call these. The
PostgreSQL views are `baton.projections.postgres.PostgresGoalViews` (only it imports psycopg).
"""

from baton.projections.fold import ProjectionError, ViewFold, ViewsReset
from baton.projections.projector import (
    DEFAULT_PAGE_SIZE,
    GoalProjection,
    ProjectionState,
    catch_up,
    catch_up_views,
    open_views,
    projection_state,
    rebuild,
    view_class,
)
from baton.projections.schema import TABLES, TASK_STATUSES, VIEWS_VERSION
from baton.projections.views import BatchHook, GoalViews, SQLiteGoalViews, ViewsChanged

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "TABLES",
    "TASK_STATUSES",
    "VIEWS_VERSION",
    "BatchHook",
    "GoalProjection",
    "GoalViews",
    "ProjectionError",
    "ProjectionState",
    "SQLiteGoalViews",
    "ViewFold",
    "ViewsChanged",
    "ViewsReset",
    "catch_up",
    "catch_up_views",
    "open_views",
    "projection_state",
    "rebuild",
    "view_class",
]
