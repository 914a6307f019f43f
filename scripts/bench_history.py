"""Long histories for the replay and projection workloads, and what reading them costs.

The histories are produced by the real domain (`Goal` + `settle`) with recorded observations
instead of agent calls, then written straight into the store, so they are genuine event logs
that replay-verify must reproduce, built in seconds rather than minutes of driving.
"""

from __future__ import annotations

import importlib
import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from baton.domain.decide import settle
from baton.domain.goal import Goal
from baton.runtime.loading import LoadedPlan, prepare_plan
from baton.store.eventstore import BatonStore
from scripts.bench_agents import PAYLOAD
from scripts.bench_workloads import AGENTS

__all__ = [
    "history_plan",
    "insert_history",
    "projection_floor",
    "projection_runner",
    "read_floor",
    "replay_runner",
    "reset_projection_floor",
    "simulate",
]

_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


def history_plan(tasks: int, attempts: int) -> LoadedPlan:
    """A chain whose tasks may each need `attempts` attempts (no backoff)."""
    chain = [{"id": "t0", "agent": "hop", "input": {"payload": "$goal.payload"}}]
    chain += [
        {"id": f"t{i}", "agent": "hop", "input": {"payload": f"$t{i - 1}.payload"}}
        for i in range(1, tasks)
    ]
    data = {
        "version": 1,
        "name": f"bench-history-{tasks}x{attempts}",
        "agents": {"hop": AGENTS["hop"]},
        "defaults": {"retry": {"max_attempts": attempts, "backoff_s": 0}},
        "tasks": chain,
        "output": f"$t{tasks - 1}",
    }
    return prepare_plan(data, source="bench history plan")


def simulate(
    loaded: LoadedPlan,
    goal_id: str,
    *,
    failures: int,
    save: Callable[[Goal], None] | None = None,
) -> list[Any]:
    """Drive a goal in memory: each task raises `failures` times, then returns.

    The same observe → settle loop as the runner, minus threads and (unless `save` is given:
    then the goal is saved after each observation and what settle decided, as the runner
    saves, and nothing is returned) the store; timestamps come from a fixed epoch, one
    millisecond per observation, so the history is reproducible.
    """
    ticks = itertools.count()

    def at() -> datetime:
        return _EPOCH + timedelta(milliseconds=next(ticks))

    goal = Goal.start(
        goal_id=goal_id, plan=loaded.plan, goal_input={"payload": PAYLOAD}, concurrency=8, at=at()
    )
    pending = [d for d in settle(goal, loaded.contracts) if d.kind == "TaskDispatched"]
    if save is not None:
        save(goal)
    while pending:
        decision = pending.pop(0)
        task, attempt = decision.fields["task"], decision.fields["attempt"]
        if attempt <= failures:
            goal.observe(
                "AgentRaised", at=at(), task=task, attempt=attempt, error_type="RuntimeError",
                message="planned failure", duration_ms=0.01,
            )
        else:
            goal.observe(
                "AgentReturned", at=at(), task=task, attempt=attempt,
                output={"payload": PAYLOAD}, duration_ms=0.01,
            )
        pending += [d for d in settle(goal, loaded.contracts) if d.kind == "TaskDispatched"]
        if save is not None:
            save(goal)
    if goal.state.status != "completed":
        raise RuntimeError(f"simulated goal {goal_id} ended {goal.state.status}")
    return list(goal.collect_events())


def insert_history(store: BatonStore, events: list[Any]) -> None:
    """Write already-recorded events as one transaction, through the store's own mapper."""
    mapper = store.app.mapper
    store.recorder.insert_events([mapper.to_stored_event(event) for event in events])


def replay_runner(
    store: BatonStore, loaded: LoadedPlan, goal_id: str, at: int
) -> tuple[Callable[[], Any], Callable[[], Any], str]:
    """(full replay-verify, replay `--at` the middle, how it is done).

    Uses `baton.domain.replay` once it exists; until then a plain fold of the events through the
    repository (the floor of any replay: it re-decides nothing).
    """
    try:
        replay = importlib.import_module("baton.domain.replay")
    except ImportError:
        replay = None
    verify = getattr(replay, "replay", None) if replay is not None else None
    if verify is not None:
        def checked(at: int | None) -> Any:
            result = verify(store.events(goal_id), loaded.contracts, at=at)
            if not result.ok:  # a benchmark of a diverging replay would time the wrong thing
                raise RuntimeError(f"replay of {goal_id} diverged: {result.divergence}")
            return result

        return (
            lambda: checked(None),
            lambda: checked(at),
            "baton.domain.replay.replay(events, contracts[, at=N]) after reading the events",
        )
    return (
        lambda: store.app.repository.get(goal_id),
        lambda: store.app.repository.get(goal_id, version=at),
        "fold only (domain/replay.py not landed yet): repository.get(goal[, version=N])",
    )


def projection_runner(store: BatonStore) -> tuple[Callable[[], Any] | None, str]:
    """What to time for projecting every event into the read models.

    `projections.rebuild`: empty the views and their tracking position (one small transaction),
    then catch up from the first event in pages, as `baton projections rebuild` does.
    """
    from baton import projections
    return (
        lambda: projections.rebuild(store.app),
        "projections.rebuild(store.app): reset, then every event in pages of "
        f"{projections.DEFAULT_PAGE_SIZE}, rows and tracking in one transaction per page",
    )


def read_floor(conn: Any, *, postgres: bool, goal_id: str) -> int:
    """Read one goal's events with the bare driver and decode each: the floor of any fold."""
    table, mark = ("baton_events", "%s") if postgres else ("stored_events", "?")
    rows = conn.execute(
        f"SELECT state FROM {table} WHERE originator_id = {mark} ORDER BY originator_version",
        (goal_id,),
    ).fetchall()
    for (state,) in rows:
        json.loads(bytes(state))
    return len(rows)


def reset_projection_floor(conn: Any) -> None:
    """An empty floor view and tracking table (untimed, before each projection floor run)."""
    conn.execute("CREATE TABLE IF NOT EXISTS floor_view (id BIGINT PRIMARY KEY, topic TEXT)")
    conn.execute("CREATE TABLE IF NOT EXISTS floor_tracking (name TEXT PRIMARY KEY, pos BIGINT)")
    conn.execute("DELETE FROM floor_view")
    conn.execute("DELETE FROM floor_tracking")


def projection_floor(conn: Any, *, postgres: bool, page: int = 1000) -> int:
    """Read every event in pages and write one view row per event plus the tracking position,
    one transaction per page: the cheapest exactly-once projection into one table."""
    table, position, mark = (
        ("baton_events", "notification_id", "%s") if postgres else ("stored_events", "rowid", "?")
    )
    done, last = 0, 0
    while True:
        rows = conn.execute(
            f"SELECT {position}, topic, state FROM {table} WHERE {position} > {mark} "
            f"ORDER BY {position} LIMIT {page}",
            (last,),
        ).fetchall()
        if not rows:
            return done
        view = []
        for notification_id, topic, state in rows:
            json.loads(bytes(state))
            view.append((notification_id, topic))
        last = rows[-1][0]
        conn.execute("BEGIN")
        conn.cursor().executemany(f"INSERT INTO floor_view VALUES ({mark}, {mark})", view)
        conn.execute(
            f"INSERT INTO floor_tracking VALUES ('floor', {mark}) "
            f"ON CONFLICT (name) DO UPDATE SET pos = excluded.pos",
            (last,),
        )
        conn.execute("COMMIT")
        done += len(rows)
