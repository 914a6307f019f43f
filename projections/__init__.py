"""Read models derived from the event log, exactly once: goal_summary, task_status, agent_stats.

Imports `domain` and eventsourcing only; the adapters open a store and call these. The
PostgreSQL views are `projections.postgres.PostgresGoalViews` (psycopg is imported only there).
"""

from projections.fold import ProjectionError, ViewFold
from projections.projector import (
    DEFAULT_PAGE_SIZE,
    GoalProjection,
    ProjectionState,
    catch_up,
    open_views,
    projection_state,
    rebuild,
    view_class,
)
from projections.schema import TABLES, TASK_STATUSES, VIEWS_VERSION
from projections.views import BatchHook, GoalViews, SQLiteGoalViews

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
    "catch_up",
    "open_views",
    "projection_state",
    "rebuild",
    "view_class",
]
