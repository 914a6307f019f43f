"""Keeping the read models current: catch-up in batches, rebuild, lag, and the follow loop.

`GoalProjection` is an eventsourcing `Projection`: `ProjectionRunner` drives it one event at a
time from a PostgreSQL subscription (LISTEN/NOTIFY) in `baton projections follow`. SQLite has no
subscriptions in the library, and a catch-up after a run wants throughput more than latency, so
`catch_up` pulls pages of notifications from the recorder and applies each page as one batch.
Both go through `GoalViews.apply_batch`: rows and tracking position in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from eventsourcing.application import Application
from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import Environment

from baton.projections.collector import collector_paused
from baton.projections.fold import ProjectionError
from baton.projections.views import (
    VIEWS_NAME,
    BatchHook,
    GoalViews,
    SQLiteGoalViews,
    ViewsChanged,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "GoalProjection",
    "ProjectionState",
    "catch_up",
    "open_views",
    "projection_state",
    "rebuild",
    "view_class",
]

DEFAULT_PAGE_SIZE = 2000  # events per transaction: larger pages write each row fewer times


class GoalProjection(Projection[GoalViews]):
    """goal_summary, task_status and agent_stats, from every event of the goals' log.

    A subscription delivers every event after the position it started from, in order, so the
    views cannot legitimately stand below the last event it delivered (`_floor`; first, the
    position read as it is constructed, before the subscription starts). Below it, a rebuild
    reset them: an event applied on top would move the tracked position past the rebuild's,
    which would then skip every event in between. `ViewsReset` instead, nothing written; the
    follower catches up in pages and subscribes again.
    """

    name = VIEWS_NAME
    topics = ()  # every goal event counts
    application_name: ClassVar[str] = "baton"  # the store's application (BatonApplication)

    def __init__(self, view: GoalViews) -> None:
        super().__init__(view)
        self._floor = view.position(self.application_name)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        position = tracking.notification_id
        self.view.apply_batch(
            tracking.application_name, [(domain_event, position)], after=None, floor=self._floor
        )
        self._floor = position


def view_class(app: Application[Any]) -> type[GoalViews]:
    """The views' recorder class for the application's persistence module."""
    module = app.env.get("PERSISTENCE_MODULE", "")
    if module.endswith("postgres"):
        from baton.projections.postgres import PostgresGoalViews  # psycopg only when needed

        return PostgresGoalViews
    if module.endswith("sqlite"):
        return SQLiteGoalViews
    raise ProjectionError(f"read models need SQLite or PostgreSQL, not {module or 'memory'}")


@contextmanager
def open_views(
    app: Application[Any], *, connections: int = 2, pre_ping: bool = False,
    take_over: bool = False,
) -> Iterator[GoalViews]:
    """The views of `app`'s store, created (and rebuilt if outdated) on first use.

    PostgreSQL: a pool of at most `connections` sessions, one kept open. A reader or a catch-up
    uses one at a time and `alone` holds a second: a pool the store's size (five kept open)
    would hold five more sessions per reader for the life of a worker. A server reading from
    many threads at once asks for more; `pre_ping` checks a session before each use, for a
    pool kept open across a restart of the database server. Read models a newer Baton built
    are refused (`ProjectionError`), unless `take_over` (a rebuild).
    """
    env = Environment(VIEWS_NAME, {**app.env, "POSTGRES_POOL_SIZE": "1",
                                   "POSTGRES_MAX_OVERFLOW": str(max(connections - 1, 0)),
                                   **({"POSTGRES_PRE_PING": "y"} if pre_ping else {})})
    factory = InfrastructureFactory[Any].construct(env)
    try:
        views: GoalViews = factory.tracking_recorder(view_class(app))
        views.ensure_version(app.name, take_over=take_over)
        yield views
    finally:
        factory.close()


def catch_up(
    app: Application[Any],
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    hook: BatchHook | None = None,
) -> int:
    """Apply every event the views have not applied yet; returns how many this call applied."""
    with open_views(app) as views:
        return _catch_up(app, views, page_size=page_size, hook=hook)


def catch_up_views(
    app: Application[Any],
    views: GoalViews,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    hook: BatchHook | None = None,
    skip_if_busy: bool,
) -> int:
    """`catch_up` on views kept open by the caller. With `skip_if_busy` (no default: callers
    say which), skipped (0) while
    another process is catching them up: for a process that does it again and again (a
    worker), where waiting for the other would only read and decode the same pages for
    nothing. Without, every event written before the call is applied when it returns.
    Views another release rebuilt since they were opened are made this release's again (a
    newer release's are refused) and caught up."""
    try:
        return _catch_up_open(app, views, page_size=page_size, hook=hook,
                              skip_if_busy=skip_if_busy)
    except ViewsChanged:
        views.ensure_version(app.name)
        return _catch_up_open(app, views, page_size=page_size, hook=hook,
                              skip_if_busy=skip_if_busy)


def _catch_up_open(
    app: Application[Any], views: GoalViews, *, page_size: int, hook: BatchHook | None,
    skip_if_busy: bool,
) -> int:
    if not skip_if_busy:
        return _catch_up(app, views, page_size=page_size, hook=hook)
    with views.alone() as alone:
        return _catch_up(app, views, page_size=page_size, hook=hook) if alone else 0


def rebuild(
    app: Application[Any],
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    hook: BatchHook | None = None,
) -> int:
    """Drop every row and tracking position, then project the whole log again (read models
    a newer Baton built too: the operator's word after a downgrade)."""
    with open_views(app, take_over=True) as views:
        views.reset(app.name)
        return _catch_up(app, views, page_size=page_size, hook=hook)


def _catch_up(
    app: Application[Any], views: GoalViews, *, page_size: int, hook: BatchHook | None
) -> int:
    applied = 0
    while True:
        with collector_paused():  # per page: its dicts all live until it is written
            after = views.position(app.name)
            notifications = app.recorder.select_notifications(start=after + 1, limit=page_size)
            if not notifications:
                return applied
            batch = [(_decoded(app, n), n.id) for n in notifications]
            if views.apply_batch(app.name, batch, after=after, hook=hook):
                applied += len(batch)
            # else another projector moved on meanwhile: read the position again


def _decoded(app: Application[Any], notification: Any) -> Any:
    try:
        return app.mapper.to_domain_event(notification)
    except Exception as exc:  # an unknown topic or undecodable state: name the event
        raise ProjectionError(
            f"event {notification.id} ({notification.topic}) cannot be read: "
            f"{type(exc).__name__}: {exc}"
        ) from None


@dataclass(frozen=True)
class ProjectionState:
    name: str
    position: int  # notification id of the last event applied
    head: int  # notification id of the newest event in the log
    lag: int  # events in the log not applied yet

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "position": self.position, "head": self.head, "lag": self.lag}


def projection_state(app: Application[Any], views: GoalViews) -> ProjectionState:
    """Where the (opened) views stand against the event log."""
    position = views.position(app.name)
    head = app.recorder.max_notification_id() or 0
    events_table = views.qualified(app.recorder.events_table_name)  # type: ignore[attr-defined]
    return ProjectionState(VIEWS_NAME, position, head,
                           views.lag(events_table, position, head=head))
