"""The read models of a store: bringing them up to date, and what the CLI reads from them.

Every command that writes events (`run`, `resume`, `resolve`, `cancel`, `fork`, `import`) calls
`refresh` before it exits, so `baton status` right after shows the result; `baton projections
follow` keeps them current for writers that are not the CLI.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from eventsourcing.projection import ProjectionRunner

import projections
from adapters.settings import settings
from adapters.store import BatonApplication, BatonStore, translated_errors
from projections import GoalViews, ProjectionState
from projections.schema import AGENT_STATS, GOAL_SUMMARY, TASK_STATUS

__all__ = [
    "agent_rows",
    "escalation_rows",
    "follow",
    "goal_rows",
    "refresh",
    "state",
    "task_rows",
    "views",
]


def _crash_hook() -> projections.BatchHook | None:
    """Fault injection for the crash tests (BATON_CRASH_IN_PROJECTION=before_commit:N)."""
    point = settings().crash_in_projection
    if point is None:
        return None
    when, at = point

    def hook(stage: str, position: int) -> None:
        if stage == when and position >= at:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _translated(store: BatonStore) -> AbstractContextManager[None]:
    return translated_errors(store.url)


def _page_size() -> int:
    return settings().projection_page_size or projections.DEFAULT_PAGE_SIZE


def refresh(store: BatonStore) -> int:
    """Apply every event the read models have not seen; returns how many."""
    with _translated(store):
        return projections.catch_up(store.app, page_size=_page_size(), hook=_crash_hook())


def rebuild(store: BatonStore) -> int:
    """Empty the read models and project every event again; returns how many."""
    with _translated(store):
        return projections.rebuild(store.app, page_size=_page_size(), hook=_crash_hook())


def state(store: BatonStore) -> ProjectionState:
    with _translated(store):
        return projections.projection_state(store.app)


@contextmanager
def views(store: BatonStore) -> Iterator[GoalViews]:
    with _translated(store), projections.open_views(store.app) as opened:
        yield opened


def goal_rows(store: BatonStore, goal_id: str | None = None) -> list[dict[str, Any]]:
    """goal_summary rows, most recently updated first (or the one goal)."""
    with views(store) as v:
        if goal_id is not None:
            return v.rows(GOAL_SUMMARY, "goal_id = ?", (goal_id,))
        return v.rows(GOAL_SUMMARY, order="updated_at DESC, goal_id")


def task_rows(store: BatonStore, goal_id: str) -> list[dict[str, Any]]:
    """task_status rows of one goal, in plan order."""
    with views(store) as v:
        return v.rows(TASK_STATUS, "goal_id = ?", (goal_id,), order="plan_index")


def agent_rows(store: BatonStore) -> list[dict[str, Any]]:
    with views(store) as v:
        return v.rows(AGENT_STATS)


def escalation_rows(store: BatonStore) -> list[dict[str, Any]]:
    """Escalated tasks of goals that have not ended, longest waiting first."""
    with views(store) as v:
        waiting = {
            row["goal_id"]
            for row in v.rows(GOAL_SUMMARY, "status IN ('running', 'waiting')")
        }
        rows = v.rows(TASK_STATUS, "status = 'escalated'", order="status_since, goal_id, task_id")
    return [row for row in rows if row["goal_id"] in waiting]


def follow(store: BatonStore, *, interval_s: float, stop: threading.Event) -> None:
    """Keep the read models current until `stop` is set.

    PostgreSQL: the library's `ProjectionRunner` over a LISTEN/NOTIFY subscription, one event
    per transaction as it is written (after a batched catch-up of any backlog). SQLite: the
    library has no subscription, so poll and catch up every `interval_s`.
    """
    refresh(store)
    if store.is_postgres:
        from projections.postgres import PostgresGoalViews

        with _translated(store), ProjectionRunner(
            application_class=BatonApplication,
            projection_class=projections.GoalProjection,
            view_class=PostgresGoalViews,
            env=store.env,
        ) as runner:
            while not stop.is_set():
                runner.run_forever(timeout=interval_s)  # re-raises the runner's errors
        return
    while not stop.wait(interval_s):
        refresh(store)


def warn_refresh_failed(exc: Exception) -> None:
    print(f"baton: warning: read models not brought up to date: {exc} "
          f"(the events are stored; `baton projections follow` catches up)", file=sys.stderr)
