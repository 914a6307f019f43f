"""The read models of a store: bringing them up to date, and what the CLI reads from them.

Every command that writes events (`run`, `resume`, `resolve`, `cancel`, `fork`, `import`) calls
`refresh` before it exits, so `baton status` right after shows the result; `baton projections
follow` keeps them current for writers that are not the CLI.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.projection import ProjectionRunner

from baton import projections
from baton.api.results import TaskResult
from baton.domain.lifecycle import GOAL_OPEN
from baton.projections import GoalViews, ProjectionState
from baton.projections.schema import AGENT_STATS, GOAL_SUMMARY, MODEL_STATS, TASK_STATUS
from baton.settings import settings
from baton.store.eventstore import (
    BatonApplication,
    BatonStore,
    GoalNotFound,
    StoreError,
    StoreReplaced,
    translated_errors,
)

__all__ = [
    "LAG_COUNTED",
    "CatchUpThread",
    "Escalations",
    "GoalList",
    "KeptReadModels",
    "Lag",
    "ReadModels",
    "Refresher",
    "follow",
    "goal_status_json",
    "read",
    "rebuild",
    "refresh",
    "warn_refresh_failed",
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


def _page_size() -> int:
    return settings().projection_page_size or projections.DEFAULT_PAGE_SIZE


def refresh(store: BatonStore) -> int:
    """Apply every event the read models have not seen; returns how many."""
    store.check_same_file()  # a deleted store file: not a new one holding read models only
    with translated_errors(store.url):
        return projections.catch_up(store.app, page_size=_page_size(), hook=_crash_hook())


class Refresher:
    """`refresh` for a process that does it every second or so (a worker, a server): through
    read models kept open (not a connection pool per call), and a call while another process
    is catching them up returns 0 at once (`projections.catch_up_views`)."""

    def __init__(self, store: BatonStore) -> None:
        self._kept = KeptReadModels(store, connections=2)  # `alone` holds the second

    def __call__(self) -> int:
        return self._kept.catch_up(skip_if_busy=True)

    def close(self) -> None:
        self._kept.close()


class CatchUpThread:
    """Brings the read models up to date in a thread of its own, every `interval_s` and at once
    when `nudge`d, so that the process it serves (a worker's loop, a server's requests) never
    waits for a catch-up. Skipped while another process catches them up (`Refresher`); a
    failure goes to `warn` once, and is tried again at the next interval."""

    def __init__(self, store: BatonStore, interval_s: float,
                 warn: Callable[[Exception], None], kept: KeptReadModels | None = None) -> None:
        self.store = store
        self.interval_s = interval_s
        self.warn = warn
        self.kept = kept  # the caller's read models, kept open (and closed) by it; else its own
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="baton-read-models")

    def start(self) -> CatchUpThread:
        self._thread.start()
        return self

    def nudge(self) -> None:
        self._wake.set()

    def close(self, timeout: float | None = None) -> None:
        """Stop, waiting up to `timeout` for a catch-up under way (None: for as long as it
        takes; a rebuild left running goes on in the daemon thread)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        own: Refresher | None = None
        refresh: Callable[[], object]
        if self.kept is None:
            refresh = own = Refresher(self.store)
        else:
            refresh = functools.partial(self.kept.catch_up, skip_if_busy=True)
        failed: str | None = None
        try:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    refresh()
                    failed = None
                except Exception as exc:
                    if str(exc) != failed:
                        self.warn(exc)
                    failed = str(exc)
                self._wake.wait(self.interval_s)
        finally:
            if own is not None:
                own.close()


def rebuild(store: BatonStore) -> int:
    """Empty the read models and project every event again; returns how many."""
    with translated_errors(store.url):
        return projections.rebuild(store.app, page_size=_page_size(), hook=_crash_hook())


# Newest first; goal_id breaks ties. GOAL_SUMMARY's indexes serve it with and without a filter.
NEWEST_FIRST = "updated_at DESC, goal_id"
_LONGEST_WAITING = "status_since, goal_id, task_id"
# An escalated task of a goal that has not ended: one primary-key probe per escalated task.
_OPEN_ESCALATION = (
    "status = 'escalated' AND EXISTS (SELECT 1 FROM {goals} g WHERE g.goal_id = "
    "task_status.goal_id AND g.status IN (" + ", ".join(f"'{s}'" for s in GOAL_OPEN) + "))"
)


# A page or a read command counts the events the read models lag by up to this many: counting
# them all would cost it time in proportion to the lag (`projections status` counts them all).
LAG_COUNTED = 10_000


@dataclass(frozen=True)
class Lag:
    """How far the read models are behind the log, counted no further than some limit."""

    position: int  # the last event they applied
    events: int  # events of the log after it, up to the limit
    more: bool  # True: more than `events` (the limit) are behind

    def __str__(self) -> str:
        return f"more than {self.events:,}" if self.more else f"{self.events:,}"


@dataclass(frozen=True)
class Escalations:
    """The longest-waiting escalated tasks of goals not ended, and how many wait in all."""

    rows: list[dict[str, Any]]
    waiting: int


@dataclass(frozen=True)
class GoalList:
    """One page of goal_summary rows, newest first, and what the page around them shows."""

    rows: list[dict[str, Any]]  # the page's rows: the columns asked for
    counts: dict[str, int]  # every goal, per status
    plans: list[str]  # every plan name, sorted
    matching: int  # goals the filters select
    page: int  # the page shown, from 1 (a page beyond the last shows the last)
    pages: int  # pages of the goals the filters select (at least 1)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class ReadModels:
    """The read models of one store, opened once for everything a command reads."""

    def __init__(self, store: BatonStore, views: GoalViews) -> None:
        self.store = store
        self.views = views

    def state(self) -> ProjectionState:
        """Position, head and lag against the event log."""
        return projections.projection_state(self.store.app, self.views)

    def behind(self, limit: int | None = None) -> Lag:
        """How far behind, counted no further than `limit` (default `LAG_COUNTED`): `state()`
        for a page or a command that is run again and again, at a cost that does not grow
        with the lag."""
        limit = LAG_COUNTED if limit is None else limit
        position = self.views.position(self.store.app.name)
        recorder: Any = self.store.app.recorder
        events_table = self.views.qualified(recorder.events_table_name)
        counted = self.views.lag(events_table, position, limit + 1)
        return Lag(position, min(counted, limit), counted > limit)

    def goals(self, goal_id: str | None = None) -> list[dict[str, Any]]:
        """goal_summary rows, most recently updated first (or the one goal)."""
        if goal_id is not None:
            return self.views.rows(GOAL_SUMMARY, "goal_id = ?", (goal_id,))
        return self.views.rows(GOAL_SUMMARY, order=NEWEST_FIRST)

    def all_goals(self, columns: Sequence[str]) -> list[dict[str, Any]]:
        """Every goal_summary row, newest first, only `columns` (`status` of all goals)."""
        return self.views.rows(GOAL_SUMMARY, order=NEWEST_FIRST, columns=columns)

    def goal_list(
        self,
        *,
        status: str | None = None,
        plan: str | None = None,
        since: datetime | None = None,
        page: int = 1,
        per_page: int = 100,
        columns: Sequence[str] | None = None,
    ) -> GoalList:
        """One page of the goals with this status and plan, updated at or after `since` (aware),
        newest first, with the counts per status and the plans of all goals.

        Filtered, counted and paged in SQL, one transaction: the page's ids come from an index
        (GOAL_SUMMARY's indexes lead with status, plan or updated_at and hold goal_id), then
        only its rows are read. A count reads an index range; the plans are a skip scan.
        """
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if plan is not None:
            where.append("plan = ?")
            params.append(plan)
        if since is not None:
            clause, values = self.views.at_or_after("updated_at", since)
            where.append(clause)
            params.extend(values)
        condition = " AND ".join(where)
        with self.views.reading() as read:
            counts = read.count_by(GOAL_SUMMARY, "status")
            plans = sorted(read.distinct(GOAL_SUMMARY, "plan"))  # code points, not a collation
            if plan is None and since is None:
                matching = sum(counts.values()) if status is None else counts.get(status, 0)
            else:
                matching = read.count(GOAL_SUMMARY, condition, params)
            pages = max(1, -(-matching // per_page))
            page = min(max(page, 1), pages)
            ids = (f"SELECT goal_id FROM {self.views.qualified(GOAL_SUMMARY.name)}"
                   f"{' WHERE ' + condition if condition else ''} "
                   f"ORDER BY {NEWEST_FIRST} LIMIT ? OFFSET ?")
            rows = read.rows(GOAL_SUMMARY, f"goal_id IN ({ids})",
                             (*params, per_page, (page - 1) * per_page), order=NEWEST_FIRST,
                             columns=columns) if matching else []
        return GoalList(rows, dict(sorted(counts.items())), plans, matching, page, pages)

    def goal_with_tasks(self, goal_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One goal's goal_summary row and its task_status rows (`status GOAL`, `Baton.status`);
        GoalNotFound when the read models have no such goal."""
        with self.views.reading() as read:  # one snapshot: the goal as its tasks stand
            found = read.rows(GOAL_SUMMARY, "goal_id = ?", (goal_id,))
            tasks = read.rows(TASK_STATUS, "goal_id = ?", (goal_id,), order="plan_index")
        if not found:
            self.store.get(goal_id)  # GoalNotFound when it is not in the log either
            raise GoalNotFound(goal_id)
        return found[0], tasks

    def tasks(self, goal_id: str) -> list[dict[str, Any]]:
        """task_status rows of one goal, in plan order."""
        return self.views.rows(TASK_STATUS, "goal_id = ?", (goal_id,), order="plan_index")

    def agents(self) -> list[dict[str, Any]]:
        return self.views.rows(AGENT_STATS)

    def models(self) -> list[dict[str, Any]]:
        """model_stats rows: usage per agent and model."""
        return self.views.rows(MODEL_STATS, order="agent, model")

    def usage(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """`agents()` and `models()` from one snapshot, so their tokens and cost add up."""
        with self.views.reading() as read:
            return read.rows(AGENT_STATS), read.rows(MODEL_STATS, order="agent, model")

    def escalations(self) -> list[dict[str, Any]]:
        """Escalated tasks of goals that have not ended, longest waiting first."""
        return self.views.rows(TASK_STATUS, self._open_escalation(), order=_LONGEST_WAITING)

    def longest_waiting(self, limit: int) -> Escalations:
        """The first `limit` of `escalations()` and how many there are, read together (one
        transaction: the count is of the rows the page was read from)."""
        where = self._open_escalation()
        with self.views.reading() as read:
            rows = read.rows(TASK_STATUS, where, order=_LONGEST_WAITING, limit=limit)
            waiting = len(rows) if len(rows) < limit else read.count(TASK_STATUS, where)
        return Escalations(rows, waiting)

    def _open_escalation(self) -> str:
        return _OPEN_ESCALATION.format(goals=self.views.qualified(GOAL_SUMMARY.name))


def goal_status_json(goal: dict[str, Any], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """`status GOAL --json` (docs/reference.md): the same shape as `run --json`."""
    return {
        "goal_id": goal["goal_id"],
        "status": goal["status"],
        "output": goal["output"],
        "reason": goal["reason"],
        "tasks": {row["task_id"]: TaskResult(row["status"], row["attempts"], row["waiting_for"],
                                             row["question"]).to_json()
                  for row in tasks},
    }


@contextmanager
def read(store: BatonStore) -> Iterator[ReadModels]:
    """The store's read models, created (or rebuilt, if outdated) on first use."""
    with translated_errors(store.url), projections.open_views(store.app) as views:
        yield ReadModels(store, views)


class KeptReadModels:
    """The read models kept open by a process that reads them again and again, from many
    threads (the web view, a `Baton` client): one pool of connections for all its reads and
    catch-ups, opened on first use, instead of a pool opened and closed for each. Safe from
    any thread: each read takes its own connection from the pool."""

    def __init__(self, store: BatonStore, *, connections: int = 8) -> None:
        self.store = store
        self.connections = connections
        self._lock = threading.Lock()
        self._open = ExitStack()
        self._models: ReadModels | None = None
        self._closed = False

    @contextmanager
    def read(self) -> Iterator[ReadModels]:
        """`read(store)`, without opening anything after the first time. A store that cannot
        be opened raises its error here and is tried again on the next call."""
        with translated_errors(self.store.url):
            yield self._opened()

    def catch_up(self, *, skip_if_busy: bool = False) -> int:
        """`refresh(store)` through the kept pool: every event written before the call is
        applied when it returns (another process catching up meanwhile is waited for); with
        `skip_if_busy`, 0 at once while another process is catching up."""
        with self.read() as models:
            return projections.catch_up_views(self.store.app, models.views,
                                              page_size=_page_size(), hook=_crash_hook(),
                                              skip_if_busy=skip_if_busy)

    def _opened(self) -> ReadModels:
        with self._lock:
            if self._closed:  # e.g. a resume the web view started, ending after the server
                raise RuntimeError("the read models were closed with their owner")
            if self._models is None:
                views = self._open.enter_context(projections.open_views(
                    self.store.app, connections=self.connections, pre_ping=True))
                self._models = ReadModels(self.store, views)
            return self._models

    def close(self) -> None:
        """Close the pool; a read or catch-up after this raises instead of opening another
        that nothing would close."""
        with self._lock:
            self._closed = True
            self._models = None
            self._open.close()


# A follower that lost the store (once it had caught up) tries again after 1 s, doubling to 30 s.
FOLLOW_RETRY_S = (1.0, 30.0)


def follow(
    store: BatonStore,
    *,
    interval_s: float,
    stop: threading.Event,
    warn: Callable[[StoreError, float], None] | None = None,
) -> None:
    """Keep the read models current until `stop` is set.

    PostgreSQL: the library's `ProjectionRunner` over a LISTEN/NOTIFY subscription, one event
    per transaction as it is written (after a batched catch-up of any backlog). SQLite: the
    library has no subscription, so poll and catch up every `interval_s`.

    A store that fails before the first catch-up is the caller's error (a wrong URL). One that
    fails later (a dropped connection, a failover, a lock held past its timeout) goes to `warn`
    (by default one line on stderr) and is tried again: the follower, a long-lived process
    under a service manager, exited 2 at the first blip and the read models fell behind.
    """
    refresh(store)
    wait = FOLLOW_RETRY_S[0]
    while not stop.is_set():
        try:
            _keep_following(store, interval_s=interval_s, stop=stop)
            return
        except StoreReplaced:
            raise  # no retry reaches the file again: the caller's error, as at the start
        except StoreError as exc:
            (warn or _warn_not_followed)(exc, wait)
        if stop.wait(wait):
            return
        wait = min(wait * 2, FOLLOW_RETRY_S[1])


def _warn_not_followed(exc: StoreError, wait: float) -> None:
    print(f"baton: warning: read models not followed: {exc}; trying again in {wait:g}s",
          file=sys.stderr, flush=True)


def _keep_following(store: BatonStore, *, interval_s: float, stop: threading.Event) -> None:
    if store.is_postgres:
        from baton.projections.postgres import PostgresGoalViews

        while not stop.is_set():
            try:
                with translated_errors(store.url), ProjectionRunner(
                    application_class=BatonApplication,
                    projection_class=projections.GoalProjection,
                    view_class=PostgresGoalViews,
                    env=store.env,
                ) as runner:
                    while not stop.is_set():
                        runner.run_forever(timeout=interval_s)  # re-raises the runner's errors
            except (projections.ViewsReset, projections.ViewsChanged):
                # a `projections rebuild` reset the views under the subscription, or another
                # release rebuilt them as its own: catch up in pages beside it (never past
                # it; an older release's views are made this one's again, a newer one's
                # refused), then subscribe again from where they stand
                refresh(store)
        return
    while not stop.wait(interval_s):
        refresh(store)


def warn_refresh_failed(exc: Exception) -> None:
    print(f"baton: warning: read models not brought up to date: {exc} "
          f"(the events are stored; `baton projections follow` catches up)", file=sys.stderr)
